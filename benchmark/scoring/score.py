"""Score a submission against a split: validate everything, then compute every metric once.

The result holds the headline metrics, bootstrap 95% intervals, breakdowns by manipulation
method and by image source, the per-sample scores, and the stamps that make a number
reproducible (protocol, metric-code version, dataset fingerprint, submission hash).
Nothing is scored when any fatal problem is found; all of them are reported together.
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.split import Split
from benchmark.metrics import METRIC_VERSION
from benchmark.metrics.clue import CLUE_POLICY, clue_scores, region_matrix
from benchmark.metrics.mask import EMPTY_TRUTH_POLICY, per_image_scores, summarize
from benchmark.metrics.stats import Bootstrap
from benchmark.metrics.text import bleu_from_totals, score_captions
from benchmark.scoring.maskpass import run_mask_pass
from benchmark.scoring.protocol import Protocol, get_protocol
from benchmark.scoring.truth import TruthCache
from submissions.format import DEFAULT_LIMITS, TASKS, Limits
from submissions.reader import Problem, Submission, SubmissionError, open_submission, read_manifest, read_predictions

MASK_HEADLINE = ("iou", "f1", "precision", "recall")
TEXT_HEADLINE = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
CLUE_HEADLINE = ("clue_precision", "clue_recall", "clue_f1")
BREAKDOWN_KEYS = ("method", "source")
CI_METHOD = ("percentile bootstrap over images, {n_boot} replicates, seed {seed}, 95%; corpus BLEU "
             "recomputed from resampled n-gram statistics; CIDEr-D per-image scores resampled with "
             "the IDF held fixed; METEOR as the mean of its segment scores")


@dataclass
class ScoreOptions:
    protocol: str = "strict"
    allow_missing: bool = False
    meteor: bool = True
    n_boot: int = 1000
    seed: int = 0
    cache_dir: Path | None = None
    progress: bool = False
    workers: int | None = None  # mask-pass processes (default: up to 4, one per core)
    limits: Limits = DEFAULT_LIMITS


@dataclass
class ScoreResult:
    """`summary` is the JSON document `mmtt score --json` prints; `per_sample` one row per id."""

    summary: dict[str, Any]
    per_sample: dict[str, np.ndarray | list] = field(repr=False)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False, mininterval=0.5)
    last = [0]

    def update(done: int) -> None:
        bar.update(done - last[0])
        last[0] = done

    return update, bar.close


def _infer_tasks(sub: Submission, preds: dict, manifest_tasks: tuple[str, ...] | None) -> tuple[str, ...]:
    if manifest_tasks:
        return manifest_tasks
    tasks = []
    if sub.masks_dir is not None or any(p.mask for p in preds.values()):
        tasks.append("localization")
    if any(p.caption is not None for p in preds.values()):
        tasks.append("interpretation")
    return tuple(tasks)


def _round(value: float, protocol: Protocol) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 6) if not protocol.strict else float(value)


def score_submission(path: Path | str, split: Split, options: ScoreOptions | None = None,
                     *, masks: Path | str | None = None) -> ScoreResult:
    """Validate and score the submission at `path` (folder, archive or predictions file)."""
    options = options or ScoreOptions()
    protocol = get_protocol(options.protocol, options.allow_missing)
    with open_submission(path, masks=masks, limits=options.limits.for_split(len(split))) as sub:
        return _score(sub, split, protocol, options)


def _score(sub: Submission, split: Split, protocol: Protocol, options: ScoreOptions) -> ScoreResult:
    preds, problems = read_predictions(sub, options.limits)
    manifest = read_manifest(sub) if sub.manifest_file else None
    tasks = _infer_tasks(sub, preds, manifest.tasks if manifest else None)
    pred_name = sub.predictions_file.name
    if not tasks:
        problems.append(Problem("no_task", f"{pred_name}: no captions and no masks: nothing to score"))
    if manifest and manifest.split and manifest.split != split.name:
        problems.append(Problem("split_mismatch", f"{sub.manifest_file.name}: made for split "
                                                  f"'{manifest.split}', scored against '{split.name}'"))

    truth_ids = set(split.ids)
    unknown = [p for p in preds.values() if p.image_id not in truth_ids]
    for p in sorted(unknown, key=lambda p: p.line):
        problems.append(Problem("unknown", f"{pred_name}:{p.line}: unknown image_id {p.image_id!r} (not in split '{split.name}')"))
    missing = [i for i in split.ids if i not in preds]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        problems.append(Problem("missing", f"{pred_name}: {len(missing)} of {len(split)} image_ids of split "
                                           f"'{split.name}' have no prediction: {shown}"))
        if protocol.fatal("missing"):
            problems.extend(Problem("missing", f"image_id {i!r}: no prediction") for i in missing)

    if protocol.strict:
        ids = list(split.ids)                         # missing ones (allowed) count as empty
    else:
        ids = [i for i in split.ids if i in preds]    # the official subset rule
    if not ids:
        problems.append(Problem("no_overlap", f"{pred_name}: no image_id in common with split '{split.name}'"))

    # ---- explanations
    captions: list[str] | None = None
    if "interpretation" in tasks:
        captions = []
        for i in ids:
            p = preds.get(i)
            if p is None:
                captions.append("")
            elif p.caption is None:
                problems.append(Problem("caption_missing", f"{pred_name}:{p.line} (image_id {i!r}): no 'caption'"))
                captions.append("")
            else:
                captions.append(p.caption)

    # ---- masks: where each one is
    files: list[Path | None] | None = None
    labels: list[str] = []
    if "localization" in tasks:
        files = []
        for i in ids:
            p = preds.get(i)
            if p is None:
                files.append(None)          # allowed missing: an empty mask
                labels.append("")
            elif p.mask is not None:
                files.append(sub.resolve_mask(p.mask)[0])
                labels.append(p.mask)
            elif sub.masks_dir is not None:
                rel = split.by_id[i].pred_mask_path
                files.append(sub.masks_dir / rel)
                labels.append(f"{sub.masks_dir.name}/{rel}")
            else:
                files.append(sub.root / "masks" / split.by_id[i].pred_mask_path)
                labels.append(f"masks/{split.by_id[i].pred_mask_path}")

    fatal = [p for p in problems if protocol.fatal(p.code)]
    # the mask pass (which reads every file) runs even when other problems are already known,
    # so that a researcher sees every problem at once — unless the ids themselves are unusable
    truth = TruthCache(split, options.cache_dir, progress=options.progress) if ids else None
    mask_pass = None
    if files is not None and truth is not None:
        update, close = _progress(len(ids), "masks", options.progress)
        try:
            mask_pass = run_mask_pass(truth, ids, files, strict=protocol.strict, labels=labels,
                                      progress=update, workers=options.workers)
        finally:
            close()
        fatal.extend(mask_pass.problems)
    if fatal:
        cap = options.limits.max_problems
        shown = [str(p) for p in fatal[:cap]]
        if len(fatal) > cap:
            shown.append(f"... and {len(fatal) - cap} more")
        raise SubmissionError(f"{sub.source}: {len(fatal)} problem(s), nothing scored; first: {fatal[0]}",
                              problems=shown)
    warnings = [str(p) for p in problems if not protocol.fatal(p.code)]
    return _compute(split, ids, tasks, protocol, options, truth, mask_pass, captions, sub, warnings, manifest,
                    n_missing=len(missing))


def _ratio_of_sums(sums: np.ndarray) -> np.ndarray:
    """Mean over the scored images of a replicate: sum(value) / count (NaN when none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[:, 0] / sums[:, 1]


def _submission_hash(sub: Submission, ids: list[str], mask_pass) -> str:
    h = hashlib.sha256(b"mmtt-submission-v1\0")
    h.update(hashlib.sha256(sub.predictions_file.read_bytes()).digest())
    if mask_pass is not None:
        for image_id, digest in zip(ids, mask_pass.digests):
            h.update(image_id.encode("utf-8") + b"\0" + digest)
    return "sha256:" + h.hexdigest()


def _compute(split, ids, tasks, protocol, options, truth, mask_pass, captions, sub, warnings, manifest,
             *, n_missing: int) -> ScoreResult:
    n = len(ids)
    records = [split.by_id[i] for i in ids]
    groups = {key: np.array([getattr(r, key) for r in records]) for key in BREAKDOWN_KEYS}
    per_sample: dict[str, Any] = {"image_id": list(ids), "method": groups["method"].tolist(),
                                  "source": groups["source"].tolist()}
    metrics: dict[str, float] = {}
    boot = Bootstrap(n, n_boot=options.n_boot, seed=options.seed)
    # per-image values whose mean is a metric: evaluated on the whole set, on each breakdown
    # group and on the bootstrap replicates alike
    mean_stats: dict[str, np.ndarray] = {}
    extra_notes = {}

    if mask_pass is not None:
        valid = mask_pass.scored
        counts = mask_pass.counts
        per_img = per_image_scores(counts, "official")
        for k in MASK_HEADLINE:
            per_sample[k] = np.where(valid, per_img[k], np.nan)
        per_sample["auc"] = mask_pass.image_auc
        summary_mask = summarize(counts[valid], pos_hist=mask_pass.pos_hist, neg_hist=mask_pass.neg_hist,
                                 image_aucs=mask_pass.image_auc[valid], policy="official")
        metrics.update(summary_mask)
        if not protocol.strict:
            extra_notes["n_mask_scored"] = int(valid.sum())
            extra_notes["n_mask_skipped"] = int((~valid).sum())
        for k in MASK_HEADLINE:
            mean_stats[k] = per_sample[k]
        extra_notes["mask_sizes"] = mask_pass.sizes

    text = None
    if captions is not None:
        hyps = dict(zip(ids, captions))
        reference = truth.text_reference()
        text = score_captions(reference, hyps, ids, meteor=options.meteor,
                              idf="all" if protocol.strict else "scored")
        metrics.update(text.metrics)
        per_sample["bleu_stats"] = text.bleu_stats  # (N, 10): paired BLEU tests resample these
        for k in ("cider", "rouge_l", "meteor"):
            if k in text.per_image:
                per_sample[k] = text.per_image[k]
                if k != "meteor":
                    mean_stats[k] = text.per_image[k]
        truth_regions = truth.regions()[[truth.index[i] for i in ids]]
        clue = clue_scores(region_matrix(captions), truth_regions)
        metrics.update(clue.summary)
        for k in CLUE_HEADLINE:
            per_sample[k] = clue.per_image[k]
            mean_stats[k] = clue.per_image[k]
        if "meteor" in text.per_image:
            mean_stats["meteor_segment_mean"] = text.per_image["meteor"]

    def evaluate(subset: np.ndarray | None) -> dict[str, float]:
        out = {}
        for k, values in mean_stats.items():
            v = values if subset is None else values[subset]
            v = v[~np.isnan(v)]
            out[k] = float(v.mean()) if len(v) else float("nan")
        if text is not None:
            stats = text.bleu_stats if subset is None else text.bleu_stats[subset]
            for j, b in enumerate(bleu_from_totals(stats.sum(axis=0)), start=1):
                out[f"bleu_{j}"] = float(b)
        return out

    # ---- uncertainty: every CI from the same replicates (NaN = not scored: a ratio of sums)
    specs: dict[str, Any] = {}
    for k, values in mean_stats.items():
        ok = ~np.isnan(values)
        specs[k] = (np.stack([np.where(ok, values, 0.0), ok.astype(float)], axis=1), _ratio_of_sums)
    if text is not None:
        specs["bleu"] = (text.bleu_stats, bleu_from_totals)
    ci = boot.cis(specs)
    if "bleu" in ci:
        low, high = ci.pop("bleu")
        ci.update({f"bleu_{j}": (float(low[j - 1]), float(high[j - 1])) for j in range(1, 5)})
    if "meteor_segment_mean" in ci:
        ci["meteor"] = ci.pop("meteor_segment_mean")

    # ---- breakdowns by method and by source
    breakdown: dict[str, dict[str, Any]] = {}
    for key in BREAKDOWN_KEYS:
        breakdown[key] = {}
        for value in sorted(set(groups[key].tolist())):
            subset = groups[key] == value
            vals = evaluate(subset)  # METEOR here is the mean of segment scores, named so
            breakdown[key][value] = {"n": int(subset.sum()),
                                     "metrics": {k: _round(v, protocol) for k, v in sorted(vals.items())}}
    metrics.pop("meteor_segment_mean", None)

    summary: dict[str, Any] = {
        "protocol": protocol.name,
        "protocol_description": protocol.description,
        "allow_missing": protocol.allow_missing,
        "split": split.name,
        "tasks": list(tasks),
        "n_truth": len(split),
        "n_scored": n,
        "n_missing": n_missing,
        "metrics": {k: _round(v, protocol) for k, v in sorted(metrics.items())},
        "ci95": {k: [_round(lo, protocol), _round(hi, protocol)] for k, (lo, hi) in sorted(ci.items())},
        "ci_method": CI_METHOD.format(n_boot=options.n_boot, seed=options.seed),
        "breakdown": breakdown,
        "mask_policy": EMPTY_TRUTH_POLICY if mask_pass is not None else None,
        "clue_policy": CLUE_POLICY if captions is not None else None,
        "metric_version": METRIC_VERSION,
        "dataset_fingerprint": split.fingerprint,
        "submission_hash": _submission_hash(sub, ids, mask_pass),
        "warnings": warnings,
        **extra_notes,
    }
    if manifest is not None:
        summary["manifest"] = {"model": manifest.model, "team": manifest.team, "tasks": list(manifest.tasks)}
    return ScoreResult(summary=summary, per_sample=per_sample)
