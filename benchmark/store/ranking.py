"""The ranking rules — one module, used by `mmtt leaderboard` and by the web board alike.

Rules:
- the board of a split shows each entry's *current* evaluation (its latest scored submission,
  last re-scored) under one protocol (`strict` by default);
- order: by `metric` when given (higher is better; entries without it last); by default by IoU
  (the localization headline), then CIDEr (the interpretation headline) — so localization entries
  come first by IoU and explanation-only entries follow by CIDEr. Ties: earlier submission first.
  Equal ranking values share a rank (1, 2, 2, 4);
- one entry per team (`team_entry`): its `best` ranked entry (default), its `latest` scored one,
  or `all`; baseline entries are always shown and never take a team's place;
- the public board leaves out private entries; flagged ones stay, marked;
- every row carries its protocol, metric version and dataset fingerprint, and `stale` when
  either differs from the current code or split (a `mmtt rescore` is due).
Two queries fetch the whole board (entries, then their scores), so 1,000 entries render at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmark.metrics import METRIC_VERSION, registry
from benchmark.store.db import StoreError
from benchmark.store.models import Entry, Evaluation, Score, Split, Submission, Team
from benchmark.store.rules import TEAM_ENTRY_CHOICES

PRIMARY_METRIC = registry.primary()                  # task -> its ranking metric (IoU, CIDEr)
DEFAULT_ORDER = tuple(PRIMARY_METRIC[t] for t in ("localization", "interpretation"))



@dataclass
class BoardRow:
    rank: int
    entry: str
    team: str
    model: str
    baseline: bool
    flagged: bool
    visibility: str
    tasks: list[str]
    metrics: dict[str, float | None]
    ci95: dict[str, list[float | None]]
    protocol: str
    metric_version: str
    dataset_fingerprint: str
    submission_hash: str
    submission_id: int
    submitted_at: datetime
    n_scored: int
    n_missing: int
    stale: bool
    paper_url: str = ""
    code_url: str = ""
    _key: tuple = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The CONTRACT row (`entry`, `team`, `baseline`, `metrics`) plus the stamps."""
        return {"rank": self.rank, "entry": self.entry, "team": self.team, "baseline": self.baseline,
                "metrics": self.metrics, "ci95": self.ci95, "model": self.model, "tasks": self.tasks,
                "flagged": self.flagged, "visibility": self.visibility, "protocol": self.protocol,
                "metric_version": self.metric_version, "dataset_fingerprint": self.dataset_fingerprint,
                "submission_hash": self.submission_hash, "submission_id": self.submission_id,
                "submitted_at": self.submitted_at.isoformat(), "n_scored": self.n_scored,
                "n_missing": self.n_missing, "stale": self.stale,
                "paper_url": self.paper_url, "code_url": self.code_url}


def order_metrics(metric: str | None) -> tuple[str, ...]:
    return (metric,) if metric else DEFAULT_ORDER


def _sort_key(row: BoardRow, order: tuple[str, ...]) -> tuple:
    key: list[Any] = []
    for m in order:
        v = row.metrics.get(m)
        key += [v is None, -(v if v is not None else 0.0)]
    return tuple(key)


def leaderboard(session: Session, split: str, *, protocol: str = "strict", metric: str | None = None,
                team_entry: str = "best", public: bool = True) -> list[BoardRow]:
    """The ranked rows of `split` (see the module doc for every rule)."""
    if team_entry not in TEAM_ENTRY_CHOICES:
        raise StoreError(f"team_entry must be one of {', '.join(TEAM_ENTRY_CHOICES)}, not '{team_entry}'")
    split_row = session.scalar(select(Split).where(Split.name == split))
    if split_row is None:
        known = ", ".join(session.scalars(select(Split.name).order_by(Split.name))) or "none"
        raise StoreError(f"split '{split}' is not on the board (splits: {known})")
    q = (select(Evaluation.id, Entry.name, Team.name, Entry.model, Entry.baseline, Entry.flagged, Entry.visibility,
                Entry.tasks, Entry.paper_url, Entry.code_url, Evaluation.protocol, Evaluation.metric_version,
                Evaluation.dataset_fingerprint, Evaluation.submission_hash, Submission.id, Submission.created_at,
                Evaluation.n_scored, Evaluation.n_missing)
         .join(Entry, Evaluation.entry_id == Entry.id).join(Team, Entry.team_id == Team.id)
         .join(Submission, Evaluation.submission_id == Submission.id)
         .where(Evaluation.split_id == split_row.id, Evaluation.protocol == protocol,
                Evaluation.current.is_(True), Submission.status == "scored"))
    if public:
        q = q.where(Entry.visibility == "public")
    rows: dict[int, BoardRow] = {}
    for (ev_id, name, team, model, baseline, flagged, visibility, tasks, paper, code, proto, version, fp, sub_hash,
         sub_id, created, n_scored, n_missing) in session.execute(q):
        rows[ev_id] = BoardRow(rank=0, entry=name, team=team, model=model, baseline=baseline, flagged=flagged,
                               visibility=visibility, tasks=[t for t in tasks.split(",") if t], metrics={}, ci95={},
                               protocol=proto, metric_version=version, dataset_fingerprint=fp,
                               submission_hash=sub_hash, submission_id=sub_id, submitted_at=created,
                               n_scored=n_scored, n_missing=n_missing,
                               stale=version != METRIC_VERSION or fp != split_row.fingerprint,
                               paper_url=paper, code_url=code)
    if rows:
        scores = select(Score.evaluation_id, Score.metric, Score.value, Score.ci_low, Score.ci_high) \
            .join(Evaluation, Score.evaluation_id == Evaluation.id) \
            .where(Evaluation.split_id == split_row.id, Evaluation.protocol == protocol, Evaluation.current.is_(True))
        for ev_id, m, value, low, high in session.execute(scores):
            row = rows.get(ev_id)
            if row is not None:
                row.metrics[m] = value
                if low is not None or high is not None:
                    row.ci95[m] = [low, high]
    return rank_rows(list(rows.values()), metric=metric, team_entry=team_entry)


def rank_rows(rows: list[BoardRow], *, metric: str | None = None, team_entry: str = "best") -> list[BoardRow]:
    """Order, keep one entry per team (baselines exempt) and number the rows. Pure: testable alone."""
    order = order_metrics(metric)
    for row in rows:
        row._key = _sort_key(row, order)
    rows = sorted(rows, key=lambda r: (r._key, r.submitted_at, r.entry))
    if team_entry != "all":
        chosen: dict[str, BoardRow] = {}
        for row in rows:   # in rank order: the first seen is the team's best
            if row.baseline:
                continue
            have = chosen.get(row.team)
            if have is None or (team_entry == "latest" and (row.submitted_at, row.submission_id)
                                > (have.submitted_at, have.submission_id)):
                chosen[row.team] = row
        keep = {id(r) for r in chosen.values()}
        rows = [r for r in rows if r.baseline or id(r) in keep]
    previous = None
    for i, row in enumerate(rows, start=1):
        row.rank = previous.rank if previous is not None and previous._key == row._key else i
        previous = row
    return rows


def board_json(rows: list[BoardRow]) -> list[dict[str, Any]]:
    return [r.to_json() for r in rows]


def metric_names(rows: list[BoardRow]) -> list[str]:
    """Metrics present on a board, the compact terminal set first (for columns), then the rest."""
    present = {m for r in rows for m in r.metrics}
    first = [m for m in registry.brief() if m in present]
    return first + [m for m in registry.ordered(present) if m not in first]
