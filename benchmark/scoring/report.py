"""A score result as a readable terminal report (the JSON form is the result's `summary`)."""

from __future__ import annotations

from typing import Any

from benchmark.metrics import registry

BREAKDOWN_WIDTH = 8  # at most this many (headline) columns in a breakdown table


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
    keys = registry.ordered(metrics)
    for k in keys:
        lo_hi = ci.get(k)
        interval = f"[{_fmt(lo_hi[0])}, {_fmt(lo_hi[1])}]" if lo_hi else ""
        lines.append(f"{k:<22}{_fmt(metrics[k]):>10}   {interval}".rstrip())
    for key, groups in summary.get("breakdown", {}).items():
        present = {c for g in groups.values() for c in g["metrics"]}
        cols = [c for c in registry.headline() if c in present][:BREAKDOWN_WIDTH]
        lines += ["", f"by {key:<22}{'n':>6}" + "".join(f"{registry.label(c):>10}" for c in cols)]
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
    lines += ["protocol: " + summary["protocol_description"], "intervals: " + (summary.get("ci_method") or "none (--n-boot 0)")]
    return "\n".join(lines)
