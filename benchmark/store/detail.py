"""Read-side queries beyond the ranking: splits, one entry's scores, its per-sample table, history.

`public=True` is what the web board and submitters get: on a hidden split (truth kept on the
maintainer's side) only aggregate scores come back — no breakdown, no per-sample values.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmark.store.db import StoreError
from benchmark.store.models import Entry, Evaluation, Split, Submission
from benchmark.store.scores import breakdown_of, metrics_of, samples_of


class HiddenSplitError(StoreError):
    """Per-sample or breakdown scores of a hidden split were asked for on the public side."""


def list_splits(session: Session) -> list[dict[str, Any]]:
    counts = dict(session.execute(select(Evaluation.split_id, func.count(func.distinct(Evaluation.entry_id)))
                                  .where(Evaluation.current.is_(True)).group_by(Evaluation.split_id)).all())
    splits = list(session.scalars(select(Split).order_by(Split.name)))
    names = {s.id: s.name for s in splits}
    return [{"name": s.name, "fingerprint": s.fingerprint, "n_items": s.n_items, "hidden": s.hidden,
             "n_entries": int(counts.get(s.id, 0)), "base": names.get(s.base_split_id), "variant": s.variant}
            for s in splits]


def get_entry(session: Session, name: str) -> Entry:
    entry = session.scalar(select(Entry).where(Entry.name == name))
    if entry is None:
        raise StoreError(f"no entry named '{name}' on the board")
    return entry


def get_split(session: Session, name: str) -> Split:
    split = session.scalar(select(Split).where(Split.name == name))
    if split is None:
        raise StoreError(f"split '{name}' is not on the board")
    return split


def current_evaluation(session: Session, entry: str, split: str, protocol: str = "strict",
                       *, public: bool = True) -> tuple[Entry, Split, Evaluation]:
    e, s = get_entry(session, entry), get_split(session, split)
    if public and e.visibility != "public":
        raise StoreError(f"no entry named '{entry}' on the board")
    ev = session.scalar(select(Evaluation).where(Evaluation.entry_id == e.id, Evaluation.split_id == s.id,
                                                 Evaluation.protocol == protocol, Evaluation.current.is_(True)))
    if ev is None:
        raise StoreError(f"entry '{entry}' has no {protocol} score on split '{split}'")
    return e, s, ev


def entry_detail(session: Session, entry: str, split: str, protocol: str = "strict",
                 *, public: bool = True) -> dict[str, Any]:
    """Everything a detail page shows about one entry on one split."""
    e, s, ev = current_evaluation(session, entry, split, protocol, public=public)
    metrics = metrics_of(session, ev.id)
    summary = json.loads(ev.summary)
    out: dict[str, Any] = {
        "entry": e.name, "team": e.team.name, "model": e.model, "description": e.description,
        "authors": e.authors, "paper_url": e.paper_url, "code_url": e.code_url,
        "tasks": [t for t in e.tasks.split(",") if t], "baseline": e.baseline, "flagged": e.flagged,
        "flag_reason": e.flag_reason, "visibility": e.visibility, "split": s.name, "hidden": s.hidden,
        "protocol": ev.protocol, "metric_version": ev.metric_version, "dataset_fingerprint": ev.dataset_fingerprint,
        "submission_hash": ev.submission_hash, "submission_id": ev.submission_id, "scored_at": ev.created_at.isoformat(),
        "n_truth": ev.n_truth, "n_scored": ev.n_scored, "n_missing": ev.n_missing,
        "metrics": {m: v for m, (v, _, _) in sorted(metrics.items())},
        "ci95": {m: [lo, hi] for m, (_, lo, hi) in sorted(metrics.items()) if lo is not None or hi is not None},
        "ci_method": summary.get("ci_method"), "mask_policy": summary.get("mask_policy"),
        "clue_policy": summary.get("clue_policy"), "protocol_description": summary.get("protocol_description"),
    }
    if not (public and s.hidden):
        out["breakdown"] = breakdown_of(session, ev.id)
        out["warnings"] = summary.get("warnings", [])
    return out


def sample_table(session: Session, entry: str, split: str, protocol: str = "strict", *, public: bool = True):
    """The per-sample scores of an entry as a pandas DataFrame (one row per image).

    Raises `HiddenSplitError` on the public side of a hidden split.
    """
    import pandas as pd

    e, s, ev = current_evaluation(session, entry, split, protocol, public=public)
    if public and s.hidden:
        raise HiddenSplitError(f"split '{split}' is hidden: per-sample scores are not published")
    cols = samples_of(session, ev.id)
    flat = {k: v for k, v in cols.items() if not hasattr(v, "ndim") or v.ndim == 1}
    return pd.DataFrame(flat)


def submission_history(session: Session, *, team: str | None = None, entry: str | None = None,
                       split: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Submissions, newest first, with status and message (failed ones included)."""
    q = select(Submission).order_by(Submission.id.desc()).limit(limit)
    if team:
        q = q.where(Submission.team_name == team)
    if entry:
        q = q.where(Submission.entry_name == entry)
    if split:
        q = q.where(Submission.split_name == split)
    return [{"id": r.id, "entry": r.entry_name, "team": r.team_name, "split": r.split_name, "status": r.status,
             "message": r.message, "protocol": r.protocol, "files_hash": r.files_hash, "files_size": r.files_size,
             "baseline": r.baseline, "created_at": r.created_at.isoformat(),
             "scored_at": r.scored_at.isoformat() if r.scored_at else None}
            for r in session.scalars(q)]
