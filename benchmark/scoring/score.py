"""Score a submission against a split: validate everything, then compute every metric once.

The result holds the headline metrics, bootstrap 95% intervals, breakdowns by manipulation
method and by image source, the per-sample scores, and the stamps that make a number
reproducible (protocol, metric-code version, dataset fingerprint, submission hash).
Nothing is scored when any fatal problem is found; all of them are reported together.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.regions import N_REGIONS, REGIONS
from benchmark.data.split import Split
from benchmark.errors import BenchmarkError
from benchmark.metrics import METRIC_VERSION, registry
from benchmark.metrics.registry import Inputs, Scored, Statistic
from benchmark.metrics.stats import Bootstrap, percentile_interval
from benchmark.scoring.maskpass import run_mask_pass
from benchmark.scoring.options import ScoreOptions
from benchmark.scoring.protocol import Protocol, get_protocol
from benchmark.scoring.truth import TruthCache
from submissions.reader import Problem, Submission, SubmissionError, open_submission, read_manifest, read_predictions

__all__ = ["BREAKDOWN_AXES", "ScoreOptions", "ScoreResult", "score_submission"]

BREAKDOWN_AXES = ("method", "source", "region")
"""Breakdown axes: manipulation method and image source (one group per image), and facial region
(the truth's 21 region labels; an image counts in every region it names)."""
CI_METHOD = ("percentile bootstrap over images, {n_boot} replicates, seed {seed}, 95%; corpus BLEU "
             "recomputed from resampled n-gram statistics; CIDEr-D per-image scores resampled with "
             "the IDF held fixed; METEOR as the mean of its segment scores")


@dataclass
class ScoreResult:
    """A scored submission. `to_json()` is the document `mmtt score --json` prints; `per_sample`
    holds one value per scored image for each per-image column (kept by the store)."""

    protocol: Protocol
    split: str
    tasks: tuple[str, ...]
    n_truth: int
    n_scored: int
    n_missing: int
    metrics: dict[str, float | None]
    ci95: dict[str, tuple[float | None, float | None]]
    ci_method: str | None
    breakdown: dict[str, dict[str, dict[str, Any]]]
    metric_version: str
    dataset_fingerprint: str
    submission_hash: str
    scorers: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    per_sample: dict[str, np.ndarray | list] = field(default_factory=dict, repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)  # wall seconds per stage (not stored)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol.name,
            "protocol_description": self.protocol.description,
            "allow_missing": self.protocol.allow_missing,
            "split": self.split,
            "tasks": list(self.tasks),
            "n_truth": self.n_truth,
            "n_scored": self.n_scored,
            "n_missing": self.n_missing,
            "metrics": dict(self.metrics),
            "ci95": {k: list(v) for k, v in self.ci95.items()},
            "ci_method": self.ci_method,
            "breakdown": self.breakdown,
            "scorers": list(self.scorers),
            "mask_policy": None,
            "clue_policy": None,
            "metric_version": self.metric_version,
            "dataset_fingerprint": self.dataset_fingerprint,
            "submission_hash": self.submission_hash,
            "warnings": list(self.warnings),
            **self.notes,
        }
        if self.manifest is not None:
            out["manifest"] = self.manifest
        return out

    @property
    def summary(self) -> dict[str, Any]:
        """The JSON form (what the store keeps and readers of stored scores see)."""
        return self.to_json()


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
    options = options.with_(limits=options.limits.for_split(len(split)))   # caps derived from the split's size
    protocol = get_protocol(options.protocol, options.allow_missing)
    with open_submission(path, masks=masks, limits=options.limits) as sub:
        return _score(sub, split, protocol, options)


def select_scorers(options: ScoreOptions, protocol: Protocol) -> list[registry.Scorer]:
    """The registry's scorers chosen by `--metrics` / `--skip` for this protocol (a located error
    on an unknown name or a metric that cannot run)."""
    try:
        return registry.select(options.metrics, options.skip, official=not protocol.strict, options=options)
    except ValueError as exc:
        raise BenchmarkError(f"--metrics/--skip: {exc}") from None


@contextmanager
def _stage(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _score(sub: Submission, split: Split, protocol: Protocol, options: ScoreOptions) -> ScoreResult:
    chosen = select_scorers(options, protocol)
    with ExitStack() as stack:   # what the scorers start early (a METEOR JVM) ends with scoring
        warm = {s.name: stack.enter_context(s.warm_up(len(split))) for s in chosen}
        return _score_warm(sub, split, protocol, options, chosen, warm)


def _score_warm(sub: Submission, split: Split, protocol: Protocol, options: ScoreOptions,
                chosen: list[registry.Scorer], warm: dict[str, Any]) -> ScoreResult:
    timings: dict[str, float] = {}
    with _stage(timings, "read predictions"):
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
    files: list[str | Path | None] | None = None
    labels: list[str] = []
    if "localization" in tasks:
        files = []
        # default places as strings (os.path.join is pathlib's join, ~10x cheaper: 21,679 of them)
        folder = os.fspath(sub.masks_dir if sub.masks_dir is not None else sub.root / "masks")
        shown = sub.masks_dir.name if sub.masks_dir is not None else "masks"
        for i in ids:
            p = preds.get(i)
            if p is None:
                files.append(None)          # allowed missing: an empty mask
                labels.append("")
            elif p.mask is not None:
                files.append(sub.resolve_mask(p.mask)[0])
                labels.append(p.mask)
            else:
                rel = split.by_id[i].pred_mask_path
                files.append(os.path.join(folder, rel))
                labels.append(f"{shown}/{rel}")

    fatal = [p for p in problems if protocol.fatal(p.code)]
    chosen = [s for s in chosen if s.task in tasks]
    inputs = Inputs(ids=ids, truth=None, strict=protocol.strict, captions=captions, options=options, warm=warm)
    if ids and not fatal:
        for scorer in chosen:
            scorer.start(inputs)   # a Java tokenizer works while the truth loads
    # the mask pass (which reads every file) runs even when other problems are already known,
    # so that a researcher sees every problem at once — unless the ids themselves are unusable
    with _stage(timings, "truth (cache load or build)"):
        truth = inputs.truth = TruthCache(split, options.cache_dir, progress=options.progress) if ids else None
    # the explanation scorers (PTB tokenizer and METEOR run in Java) work beside the mask pass,
    # in a thread started once the mask workers are forked; once the mask pass is done, this
    # thread takes the ones still waiting (the n-gram pass, the clues while METEOR runs); a fatal
    # problem cancels them
    beside = _Queue([s for s in chosen if s.task == "interpretation"] if truth is not None and not fatal else [])
    outputs: dict[str, Scored] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="mmtt-text") as pool:
        pending: list[Future] = []

        def start_text() -> None:
            if beside.scorers and not pending:
                pending.append(pool.submit(beside.run, inputs, timings))

        mask_pass = None
        try:
            if files is not None and truth is not None:
                update, close = _progress(len(ids), "masks", options.progress)
                try:
                    with _stage(timings, "mask pass"):
                        mask_pass = run_mask_pass(truth, ids, files, strict=protocol.strict, labels=labels,
                                                  progress=update, workers=options.workers, started=start_text)
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
            start_text()
            if pending:
                outputs.update(beside.run(inputs, timings))
                outputs.update(pending[0].result())
        except BaseException:
            inputs.cancel.set()
            raise
    warnings = [str(p) for p in problems if not protocol.fatal(p.code)]
    inputs.masks = mask_pass
    outputs.update(_run_scorers([s for s in chosen if s not in beside.scorers], inputs, timings))
    result = _compute(split, inputs, chosen, outputs, tasks, protocol, options, timings)
    result.n_missing = len(missing)
    result.warnings = warnings
    result.submission_hash = _submission_hash(sub, ids, mask_pass)
    if manifest is not None:
        result.manifest = {"model": manifest.model, "team": manifest.team, "tasks": list(manifest.tasks)}
    return result


def _submission_hash(sub: Submission, ids: list[str], mask_pass) -> str:
    h = hashlib.sha256(b"mmtt-submission-v1\0")
    h.update(hashlib.sha256(sub.predictions_file.read_bytes()).digest())
    if mask_pass is not None:
        for image_id, digest in zip(ids, mask_pass.digests):
            h.update(image_id.encode("utf-8") + b"\0" + digest)
    return "sha256:" + h.hexdigest()


class _Queue:
    """Scorers taken one at a time by whichever thread is free: the `lead` ones (METEOR's JVM)
    first, so that the longest job starts at once, then the others in order."""

    def __init__(self, scorers: list[registry.Scorer]) -> None:
        self.scorers = scorers
        self._left = list(reversed(sorted(scorers, key=lambda s: not s.lead)))
        self._lock = threading.Lock()

    def run(self, inputs: Inputs, timings: dict[str, float]) -> dict[str, Scored]:
        out = {}
        while True:
            with self._lock:
                if not self._left:
                    return out
                scorer = self._left.pop()
            out.update(_run_scorers([scorer], inputs, timings))


def _run_scorers(scorers: list[registry.Scorer], inputs: Inputs, timings: dict[str, float]) -> dict[str, Scored]:
    out = {}
    for scorer in scorers:
        with _stage(timings, f"metric {scorer.name}"):
            out[scorer.name] = scorer.score(inputs)
    return out


def _compute(split: Split, inputs: Inputs, chosen: list[registry.Scorer], outputs: dict[str, Scored],
             tasks: tuple[str, ...], protocol: Protocol, options: ScoreOptions,
             timings: dict[str, float]) -> ScoreResult:
    """Gather every chosen scorer's output, then form CIs and breakdowns from their statistics alike."""
    ids = inputs.ids
    records = [split.by_id[i] for i in ids]
    per_sample: dict[str, Any] = {"image_id": list(ids), "method": [r.method for r in records],
                                  "source": [r.source for r in records]}
    values: dict[str, float] = {}
    stats: dict[str, Statistic] = {}
    notes: dict[str, Any] = {}
    for scorer in chosen:
        out = outputs[scorer.name]
        values.update(out.values)
        per_sample.update(out.samples)
        stats.update(out.stats)
        notes.update(out.notes)
    if inputs.masks is not None:
        notes["mask_sizes"] = inputs.masks.sizes
        if not protocol.strict:
            notes["n_mask_scored"] = int(inputs.masks.scored.sum())
            notes["n_mask_skipped"] = int((~inputs.masks.scored).sum())

    order = registry.ordered(values)
    ci: dict[str, tuple[float | None, float | None]] = {}
    if options.replicates > 0 and stats:
        with _stage(timings, "bootstrap CIs"):
            ci = {k: (_round(lo, protocol), _round(hi, protocol))
                  for k, (lo, hi) in _intervals(stats, len(ids), options).items()}
    with _stage(timings, "breakdowns"):
        breakdown = {axis: _breakdown(groups, stats, protocol)
                     for axis, groups in _groups(split, records).items()}
    return ScoreResult(
        protocol=protocol, split=split.name, tasks=tuple(tasks), n_truth=len(split), n_scored=len(ids),
        n_missing=0, metrics={k: _round(values[k], protocol) for k in order},
        ci95={k: ci[k] for k in registry.ordered(ci)},
        ci_method=CI_METHOD.format(n_boot=options.replicates, seed=options.seed) if ci else None,
        breakdown=breakdown, metric_version=METRIC_VERSION, dataset_fingerprint=split.fingerprint,
        submission_hash="", scorers=tuple(s.name for s in chosen), notes=notes, per_sample=per_sample,
        timings=timings)


def _intervals(stats: dict[str, Statistic], n: int, options: ScoreOptions) -> dict[str, tuple[float, float]]:
    """Every metric's percentile interval from one set of replicates; metrics sharing their
    sufficient statistics (BLEU-1..4, the pixel-level scores) share one block of columns."""
    shared: dict[int, list[str]] = {}
    for key, st in stats.items():
        shared.setdefault(id(st.rows), []).append(key)

    def joint(keys: list[str]):
        return lambda sums: np.stack([np.asarray(stats[k].fn(sums), dtype=np.float64) for k in keys], axis=-1)

    specs = {str(i): (stats[keys[0]].rows, joint(keys)) for i, keys in enumerate(shared.values())}
    boot = Bootstrap(n, n_boot=options.replicates, seed=options.seed)
    out: dict[str, tuple[float, float]] = {}
    reps = boot.replicates_many(specs)
    for i, keys in enumerate(shared.values()):
        low, high = percentile_interval(reps[str(i)])
        for j, key in enumerate(keys):
            out[key] = (float(low[j]), float(high[j]))
    return out


def _groups(split: Split, records: list) -> dict[str, dict[str, np.ndarray]]:
    """Per axis, group name -> (n,) bool membership of the scored images."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for axis in ("method", "source"):
        labels = np.array([getattr(r, axis) for r in records])
        out[axis] = {name: labels == name for name in sorted(set(labels.tolist()))}
    regions = np.array([r.multilabel for r in records], dtype=bool).reshape(len(records), N_REGIONS)
    out["region"] = {name: regions[:, j] for j, name in enumerate(REGIONS) if regions[:, j].any()}
    return out


def _breakdown(groups: dict[str, np.ndarray], stats: dict[str, Statistic],
               protocol: Protocol) -> dict[str, dict[str, Any]]:
    """Every metric with a statistic, on every group: one matrix product per axis."""
    if not groups:
        return {}
    names = list(groups)
    membership = np.stack([groups[n] for n in names]).astype(np.float64)      # (G, n)
    out = {name: {"n": int(groups[name].sum()), "metrics": {}} for name in names}
    for key in registry.ordered(stats):
        st = stats[key]
        sums = membership @ st.rows                                            # (G, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.asarray(st.fn(sums), dtype=np.float64)
        for g, name in enumerate(names):
            out[name]["metrics"][key] = _round(float(vals[g]), protocol)
    return out
