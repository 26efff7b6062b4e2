"""A score result as a readable terminal report (the JSON form is the result's `summary`)."""

from __future__ import annotations

from typing import Any

ORDER = ("iou", "f1", "precision", "recall", "iou_micro", "f1_micro", "precision_micro", "recall_micro",
         "auc", "auc_image_mean", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider",
         "clue_f1", "clue_precision", "clue_recall", "clue_f1_micro", "clue_precision_micro", "clue_recall_micro")
BREAKDOWN_COLUMNS = ("iou", "f1", "bleu_4", "rouge_l", "cider", "clue_f1")


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_report(summary: dict[str, Any]) -> str:
    metrics, ci = summary["metrics"], summary.get("ci95", {})
    lines = [
        f"split {summary['split']}  protocol {summary['protocol']}  tasks {', '.join(summary['tasks'])}",
        f"scored {summary['n_scored']} of {summary['n_truth']} (missing {summary['n_missing']})  "
        f"metrics v{summary['metric_version']}  data {summary['dataset_fingerprint'][:19]}  "
        f"submission {summary['submission_hash'][:19]}",
        "",
        f"{'metric':<22}{'value':>10}   95% CI",
    ]
    keys = [k for k in ORDER if k in metrics] + sorted(k for k in metrics if k not in ORDER)
    for k in keys:
        lo_hi = ci.get(k)
        interval = f"[{_fmt(lo_hi[0])}, {_fmt(lo_hi[1])}]" if lo_hi else ""
        lines.append(f"{k:<22}{_fmt(metrics[k]):>10}   {interval}".rstrip())
    for key, groups in summary.get("breakdown", {}).items():
        cols = [c for c in BREAKDOWN_COLUMNS if any(c in g["metrics"] for g in groups.values())]
        lines += ["", f"by {key:<22}{'n':>6}" + "".join(f"{c:>10}" for c in cols)]
        for name, g in groups.items():
            lines.append(f"  {name:<23}{g['n']:>6}" + "".join(f"{_fmt(g['metrics'].get(c)):>10}" for c in cols))
    if summary.get("n_mask_skipped"):
        lines += ["", f"{summary['n_mask_skipped']} mask(s) missing or unreadable were skipped (official rule)"]
    for w in summary.get("warnings", [])[:20]:
        lines.append(f"warning: {w}")
    if summary.get("mask_policy"):
        lines += ["", "masks: " + summary["mask_policy"]]
    if summary.get("clue_policy"):
        lines += ["clues: " + summary["clue_policy"]]
    lines += ["protocol: " + summary["protocol_description"], "intervals: " + summary["ci_method"]]
    return "\n".join(lines)
