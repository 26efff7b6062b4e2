"""Write a score result into the store (and read it back): one evaluation and its rows.

Per-sample arrays are stored one column per row, zlib-compressed (`f4` little-endian float32
with its shape — 7 significant digits are plenty for a detail page or a paired test and halve
the size: a full MMTT test evaluation is about 1 MB — or `json` for strings), so one entry's
21,679 values come back in a single fetch. Only the latest evaluation of a submission keeps
them: a re-score drops the per-sample rows of the evaluation it replaces (aggregates stay). Each evaluation also keeps a digest of everything it stores:
re-scoring compares digests, which is what makes `mmtt rescore` idempotent.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from benchmark.store.models import (
    BreakdownScore,
    Entry,
    Evaluation,
    SampleScores,
    Score,
    Split,
    Submission,
)

# kept in the tables, not in the evaluation's summary JSON
_TABLED = ("metrics", "ci95", "breakdown")


class ScoreResultLike(Protocol):
    summary: dict[str, Any]
    per_sample: Mapping[str, Any]


def encode_column(values: Sequence[Any] | np.ndarray) -> tuple[str, str, bytes, bytes]:
    """(encoding, shape JSON, compressed bytes, raw bytes) of one per-sample column."""
    if isinstance(values, (list, tuple)) and values and all(isinstance(v, str) for v in values):
        raw = json.dumps(list(values), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return "json", json.dumps([len(values)]), zlib.compress(raw, 6), raw
    arr = np.ascontiguousarray(np.asarray(values, dtype="<f4"))
    raw = arr.tobytes()
    return "f4", json.dumps(list(arr.shape)), zlib.compress(raw, 6), raw


def decode_column(encoding: str, shape: str, data: bytes) -> list[str] | np.ndarray:
    raw = zlib.decompress(data)
    if encoding == "json":
        return json.loads(raw.decode("utf-8"))
    if encoding in ("f4", "f8"):
        return np.frombuffer(raw, dtype="<" + encoding).reshape(json.loads(shape)).astype(np.float64)
    raise ValueError(f"unknown per-sample encoding {encoding!r}")


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def result_digest(summary: Mapping[str, Any], columns: Mapping[str, tuple[str, str, bytes, bytes]]) -> str:
    """A digest of every number and stamp an evaluation stores (not of when it was made)."""
    h = hashlib.sha256(b"mmtt-evaluation-v1\0")
    keys = ("protocol", "allow_missing", "split", "tasks", "n_truth", "n_scored", "n_missing", "metric_version",
            "dataset_fingerprint", "submission_hash", "mask_policy", "clue_policy", "ci_method")
    h.update(_canonical({k: summary.get(k) for k in keys}))
    h.update(_canonical({k: summary.get(k) for k in _TABLED}))
    for name in sorted(columns):
        encoding, shape, _, raw = columns[name]
        h.update(_canonical([name, encoding, shape]))
        h.update(hashlib.sha256(raw).digest())
    return "sha256:" + h.hexdigest()


def prepare(result: ScoreResultLike) -> tuple[dict[str, tuple[str, str, bytes, bytes]], str]:
    """Encoded per-sample columns and the digest of `result` (computed before any transaction)."""
    columns = {name: encode_column(values) for name, values in result.per_sample.items()}
    return columns, result_digest(result.summary, columns)


def add_evaluation(session: Session, *, submission: Submission, entry: Entry, split: Split,
                   result: ScoreResultLike, prepared=None) -> Evaluation:
    """Insert an evaluation of `submission` with its scores, breakdowns and per-sample columns."""
    summary = result.summary
    columns, digest = prepared or prepare(result)
    stamps = dict(entry_id=entry.id, split_id=split.id, protocol=summary["protocol"],
                  metric_version=summary["metric_version"], dataset_fingerprint=summary["dataset_fingerprint"])
    ev = Evaluation(submission_id=submission.id, submission_hash=summary["submission_hash"], current=False,
                    n_truth=int(summary["n_truth"]), n_scored=int(summary["n_scored"]),
                    n_missing=int(summary["n_missing"]), tasks=",".join(summary.get("tasks", [])),
                    summary=json.dumps({k: v for k, v in summary.items() if k not in _TABLED},
                                       sort_keys=True, default=str),
                    digest=digest, **stamps)
    session.add(ev)
    session.flush()
    ci = summary.get("ci95", {})
    session.add_all(
        Score(evaluation_id=ev.id, metric=metric, value=_clean(value),
              ci_low=_clean(ci[metric][0]) if metric in ci else None,
              ci_high=_clean(ci[metric][1]) if metric in ci else None, **stamps)
        for metric, value in summary.get("metrics", {}).items())
    session.add_all(
        BreakdownScore(evaluation_id=ev.id, dimension=dimension, group_name=group, n=int(g["n"]),
                       metric=metric, value=_clean(value))
        for dimension, groups in summary.get("breakdown", {}).items()
        for group, g in groups.items()
        for metric, value in g["metrics"].items())
    session.add_all(
        SampleScores(evaluation_id=ev.id, name=name, encoding=enc, shape=shape, data=data)
        for name, (enc, shape, data, _) in columns.items())
    session.flush()
    return ev


def drop_samples(session: Session, evaluation_id: int) -> None:
    """Per-sample rows of a replaced evaluation are dead weight (its aggregates stay as history)."""
    session.execute(delete(SampleScores).where(SampleScores.evaluation_id == evaluation_id))


def refresh_current(session: Session, entry_id: int, split_id: int, protocol: str) -> Evaluation | None:
    """Make the newest evaluation of the entry's newest scored submission the one the board shows."""
    latest_sub = session.scalar(
        select(Submission.id)
        .where(Submission.entry_id == entry_id, Submission.split_id == split_id,
               Submission.protocol == protocol, Submission.status == "scored")
        .order_by(Submission.id.desc()).limit(1))
    chosen = None
    if latest_sub is not None:
        chosen = session.scalar(select(Evaluation).where(Evaluation.submission_id == latest_sub)
                                .order_by(Evaluation.id.desc()).limit(1))
    where = (Evaluation.entry_id == entry_id, Evaluation.split_id == split_id, Evaluation.protocol == protocol)
    session.execute(update(Evaluation).where(*where, Evaluation.current.is_(True))
                    .values(current=False).execution_options(synchronize_session=False))
    if chosen is not None:
        session.execute(update(Evaluation).where(Evaluation.id == chosen.id).values(current=True)
                        .execution_options(synchronize_session=False))
        chosen.current = True
    return chosen


def metrics_of(session: Session, evaluation_id: int) -> dict[str, tuple[float | None, float | None, float | None]]:
    """{metric: (value, ci_low, ci_high)} of an evaluation."""
    rows = session.execute(select(Score.metric, Score.value, Score.ci_low, Score.ci_high)
                           .where(Score.evaluation_id == evaluation_id))
    return {m: (v, lo, hi) for m, v, lo, hi in rows}


def breakdown_of(session: Session, evaluation_id: int) -> dict[str, dict[str, dict[str, Any]]]:
    """{dimension: {group: {"n", "metrics": {...}}}} — the shape of the score summary."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    rows = session.execute(select(BreakdownScore.dimension, BreakdownScore.group_name, BreakdownScore.n,
                                  BreakdownScore.metric, BreakdownScore.value)
                           .where(BreakdownScore.evaluation_id == evaluation_id)
                           .order_by(BreakdownScore.dimension, BreakdownScore.group_name, BreakdownScore.metric))
    for dim, group, n, metric, value in rows:
        g = out.setdefault(dim, {}).setdefault(group, {"n": n, "metrics": {}})
        g["metrics"][metric] = value
    return out


def samples_of(session: Session, evaluation_id: int, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-sample columns of an evaluation (all, or those named)."""
    q = select(SampleScores.name, SampleScores.encoding, SampleScores.shape, SampleScores.data) \
        .where(SampleScores.evaluation_id == evaluation_id)
    if names is not None:
        q = q.where(SampleScores.name.in_(list(names)))
    return {name: decode_column(enc, shape, data) for name, enc, shape, data in session.execute(q)}


def full_summary(session: Session, evaluation: Evaluation) -> dict[str, Any]:
    """The score summary as `mmtt score --json` printed it, rebuilt from the tables."""
    summary = json.loads(evaluation.summary)
    metrics = metrics_of(session, evaluation.id)
    summary["metrics"] = {m: v for m, (v, _, _) in sorted(metrics.items())}
    summary["ci95"] = {m: [lo, hi] for m, (_, lo, hi) in sorted(metrics.items()) if lo is not None or hi is not None}
    summary["breakdown"] = breakdown_of(session, evaluation.id)
    return summary
