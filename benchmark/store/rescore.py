"""`mmtt rescore`: recompute stored entries from their kept files with the current metric code.

For each entry's current submission (per split and protocol) the kept files are rebuilt in a
temporary folder and scored with the options it was first scored with. The new evaluation is
written — stamped with the current metric version and dataset fingerprint — only when something
it stores differs from the current one (compared by digest; the old one stays as history, less
its per-sample rows): re-running changes nothing, and a
run killed half-way is completed by the next (each entry is its own transaction). The report
lists every metric that moved: entry, split, protocol, metric, old, new.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.scoring.options import ScoreOptions
from benchmark.store.board import Board
from benchmark.store.db import StoreError
from benchmark.store.faults import checkpoint
from benchmark.store.models import Entry, Evaluation, Split, Submission
from benchmark.store.scores import add_evaluation, drop_samples, metrics_of, prepare, refresh_current
from benchmark.store.submission import SubmitRequest, default_scorer


@dataclass
class DiffRow:
    entry: str
    split: str
    protocol: str
    metric: str
    old: float | None
    new: float | None


@dataclass
class RescoreItem:
    entry: str
    split: str
    protocol: str
    submission_id: int
    status: str = "pending"          # updated | unchanged | skipped | failed
    message: str = ""
    old_version: str = ""
    new_version: str = ""
    old_fingerprint: str = ""
    new_fingerprint: str = ""
    diffs: list[DiffRow] = field(default_factory=list)


@dataclass
class RescoreReport:
    items: list[RescoreItem]

    @property
    def diffs(self) -> list[DiffRow]:
        return [d for item in self.items for d in item.diffs]

    def count(self, status: str) -> int:
        return sum(item.status == status for item in self.items)

    def to_json(self) -> dict[str, Any]:
        return {"items": [{k: v for k, v in asdict(i).items() if k != "diffs"} for i in self.items],
                "diff": [asdict(d) for d in self.diffs],
                "counts": {s: self.count(s) for s in ("updated", "unchanged", "skipped", "failed")}}


@dataclass(frozen=True)
class _Target:
    entry: str
    entry_id: int
    split: str
    split_id: int
    protocol: str
    submission_id: int
    files_hash: str | None
    allow_missing: bool
    options: str


def _targets(session: Session, split: str | None, entry: str | None) -> list[_Target]:
    q = (select(Entry.name, Entry.id, Split.name, Split.id, Evaluation.protocol, Submission.id,
                Submission.files_hash, Submission.allow_missing, Submission.options)
         .join(Entry, Evaluation.entry_id == Entry.id).join(Split, Evaluation.split_id == Split.id)
         .join(Submission, Evaluation.submission_id == Submission.id)
         .where(Evaluation.current.is_(True), Submission.status == "scored")
         .order_by(Split.name, Entry.name, Evaluation.protocol))
    if split is not None:
        q = q.where(Split.name == split)
    if entry is not None:
        q = q.where(Entry.name == entry)
    return [_Target(*row) for row in session.execute(q)]


def _same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a == b)


def rescore(board: Board, data: Path | str, *, split: str | None = None, entry: str | None = None,
            scorer: Callable | None = None, cache_dir: Path | None = None, progress: bool = False,
            log: Callable[[str], None] | None = None) -> RescoreReport:
    """Re-score every current entry (or those of one split / one entry); see the module doc."""
    scorer = scorer or default_scorer
    targets = board.db.read(lambda s: _targets(s, split, entry), "listing entries")
    if not targets and (split or entry):
        what = " and ".join(f"{k} '{v}'" for k, v in (("split", split), ("entry", entry)) if v)
        raise StoreError(f"no scored entry on the board matches {what}")
    items: list[RescoreItem] = []
    loaded: dict[str, Any] = {}
    for t in targets:
        item = RescoreItem(entry=t.entry, split=t.split, protocol=t.protocol, submission_id=t.submission_id)
        items.append(item)
        try:
            if t.split not in loaded:
                data_split = load_split(Path(data), t.split)
                loaded[t.split] = (data_split, data_split.fingerprint)
            data_split, fingerprint = loaded[t.split]
            if not t.files_hash:
                raise StoreError(f"submission #{t.submission_id} has no kept files")
            options = json.loads(t.options or "{}")
            stored = ScoreOptions.from_stored(options, protocol=t.protocol, allow_missing=t.allow_missing,
                                              cache_dir=cache_dir, progress=progress)
            request = SubmitRequest(path=Path(), data=Path(data), name=t.entry, split=t.split, options=stored)
            with tempfile.TemporaryDirectory(prefix="mmtt-rescore-") as tmp:
                root = board.files.materialize(t.files_hash, Path(tmp) / "submission")
                result = scorer(root, data_split, request)
            prepared = prepare(result)
            board.db.write(lambda s: _apply(s, t, item, result, prepared, fingerprint, len(data_split)),
                           "storing re-scored results")
        except BenchmarkError as exc:
            item.status, item.message = "failed", str(exc)
        if log:
            log(f"{item.status:>9}  {t.entry} / {t.split} / {t.protocol}" + (f": {item.message}" if item.message else ""))
    return RescoreReport(items)


def _apply(session: Session, t: _Target, item: RescoreItem, result, prepared, fingerprint: str, n_items: int) -> None:
    item.diffs = []
    current = session.scalar(select(Evaluation).where(
        Evaluation.entry_id == t.entry_id, Evaluation.split_id == t.split_id, Evaluation.protocol == t.protocol,
        Evaluation.current.is_(True)))
    summary = result.summary
    item.new_version, item.new_fingerprint = summary["metric_version"], summary["dataset_fingerprint"]
    if current is None or current.submission_id != t.submission_id:
        item.status, item.message = "skipped", "a newer submission replaced it meanwhile"
        return
    item.old_version, item.old_fingerprint = current.metric_version, current.dataset_fingerprint
    if current.digest == prepared[1]:
        item.status = "unchanged"
        return
    split_row = session.get(Split, t.split_id)
    if split_row.fingerprint != fingerprint:       # the truth changed: the board follows the data
        split_row.fingerprint, split_row.n_items = fingerprint, n_items
    old = metrics_of(session, current.id)
    add_evaluation(session, submission=session.get(Submission, t.submission_id), entry=session.get(Entry, t.entry_id),
                   split=split_row, result=result, prepared=prepared)
    refresh_current(session, t.entry_id, t.split_id, t.protocol)
    drop_samples(session, current.id)
    checkpoint("rescore-commit")
    new = {m: (None if v is None or v != v else float(v)) for m, v in summary.get("metrics", {}).items()}
    for metric in sorted(set(old) | set(new)):
        before = old.get(metric, (None,))[0]
        after = new.get(metric)
        if not _same(before, after):
            item.diffs.append(DiffRow(t.entry, t.split, t.protocol, metric, before, after))
    item.status = "updated"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6f}"


def format_report(report: RescoreReport) -> str:
    """The diff table (entry, split, protocol, metric, old, new, change) and a one-line tally."""
    lines = []
    diffs = report.diffs
    if diffs:
        w = max(5, *(len(d.entry) for d in diffs))
        ws = max(5, *(len(d.split) for d in diffs))
        lines.append(f"{'entry':<{w}}  {'split':<{ws}}  {'protocol':<8}  {'metric':<18}{'old':>12}{'new':>12}{'change':>12}")
        for d in diffs:
            change = "" if d.old is None or d.new is None else f"{d.new - d.old:+.6f}"
            lines.append(f"{d.entry:<{w}}  {d.split:<{ws}}  {d.protocol:<8}  {d.metric:<18}"
                         f"{_fmt(d.old):>12}{_fmt(d.new):>12}{change:>12}")
    for item in report.items:
        if item.status == "updated" and (item.old_version != item.new_version
                                         or item.old_fingerprint != item.new_fingerprint):
            lines.append(f"{item.entry} / {item.split}: metric version {item.old_version} -> {item.new_version}"
                         + (f", data {item.old_fingerprint[:19]} -> {item.new_fingerprint[:19]}"
                            if item.old_fingerprint != item.new_fingerprint else ""))
        if item.status in ("failed", "skipped"):
            lines.append(f"{item.entry} / {item.split}: {item.status}: {item.message}")
    tally = ", ".join(f"{report.count(s)} {s}" for s in ("updated", "unchanged", "skipped", "failed"))
    lines.append(f"re-scored {len(report.items)} entr{'y' if len(report.items) == 1 else 'ies'}: {tally}"
                 + ("" if diffs else "; no metric moved"))
    return "\n".join(lines)
