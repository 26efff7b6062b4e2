"""`mmtt submit`: validate, score and store a submission — all of it, or nothing but a failed row.

Order of work, and why:
1. checks that need no database (a folder or archive, the upload size, a valid manifest);
2. the files are kept, content-addressed (idempotent: a re-run stores nothing new);
3. a short write transaction reserves a `received` submission row after checking the rules
   (daily limit, entry name owned by the team) — serialized by `BEGIN IMMEDIATE`, so eight
   processes cannot all squeeze under the limit;
4. `validating`: the split is loaded and its truth fingerprint checked against the board's;
   `scoring`: the scorer validates every line and file, then scores, with no transaction open
   (it can take minutes; the board stays writable);
5. one write transaction creates the team, entry, evaluation, scores, breakdowns and per-sample
   rows and marks the submission `scored`. Until it commits, no entry and no score exists.
Any failure marks the reserved row `failed` with the reason (or inserts a failed row); nothing
else changes. A process killed at any point leaves at most an in-progress row whose worker is
dead: running the same command again takes that row over and finishes the work.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmark.data.robust import VARIANTS, normalize_variants, parse_split_name, variant_split_name
from benchmark.data.split import Split as DataSplit
from benchmark.data.split import load_split
from benchmark.errors import BenchmarkError
from benchmark.metrics import METRIC_VERSION
from benchmark.scoring.options import ScoreOptions
from benchmark.store.board import Board
from benchmark.store.errors import RuleError, StoreError
from benchmark.store.faults import checkpoint
from benchmark.store.filestore import tree_size
from benchmark.store.models import (
    IN_PROGRESS,
    Author,
    Entry,
    Evaluation,
    Split,
    Submission,
    Team,
    utcnow,
)
from benchmark.store.rules import check_daily_limit, rule_value
from benchmark.store.scores import add_evaluation, full_summary, prepare, refresh_current
from submissions.archive import is_archive
from submissions.format import TASKS, Manifest
from submissions.reader import open_submission, read_manifest

MIB = 1024 * 1024
MAX_NAME = 200
MAX_MESSAGE = 8000
STALE_AFTER = timedelta(hours=6)   # an in-progress row from another host counts as abandoned after this
PUBLIC_SUMMARY_KEYS = ("protocol", "protocol_description", "allow_missing", "split", "tasks", "n_truth", "n_scored",
                       "n_missing", "metrics", "ci95", "ci_method", "mask_policy", "clue_policy",
                       "metric_version", "dataset_fingerprint", "submission_hash", "manifest", "warnings")

Scorer = Callable[..., Any]   # score_submission's signature: (path, split, options) -> ScoreResult


@dataclass
class SubmitRequest:
    path: Path
    data: Path
    name: str
    split: str = "test"
    variant: str | None = None   # a robustness variant of `split` (downscale | blur | both)
    team: str | None = None
    baseline: bool = False
    private: bool = False
    options: ScoreOptions = field(default_factory=ScoreOptions)
    daily_limit: int | None = None
    max_upload_mb: float | None = None

    @property
    def protocol(self) -> str:
        return self.options.protocol

    @property
    def allow_missing(self) -> bool:
        return self.options.allow_missing

    @property
    def target_split(self) -> str:
        """The board split the submission goes to: `split`, or its variant (`test` + `blur` -> `test_blur`)."""
        return variant_target(self.split, self.variant)[0]

    def options_json(self) -> str:
        """The scoring options other than protocol: kept so a re-score repeats them exactly."""
        return json.dumps(self.options.fingerprint(), sort_keys=True)


@dataclass
class SubmitOutcome:
    submission_id: int
    entry: str
    team: str
    split: str
    hidden: bool
    duplicate: bool
    files_hash: str
    summary: dict[str, Any] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"submission_id": self.submission_id, "status": "scored", "duplicate": self.duplicate,
                "entry": self.entry, "team": self.team, "split": self.split, "hidden": self.hidden,
                "files_hash": self.files_hash, **self.summary}


@dataclass
class _State:
    """What is known so far: enough to write a failed row whatever step broke."""

    entry_name: str
    team_name: str
    split_name: str
    source_name: str
    request: SubmitRequest
    files_hash: str | None = None
    size: int | None = None
    submission_id: int | None = None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purpose
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def worker_alive(worker: str, updated_at: datetime | None) -> bool:
    """Whether the process that owns an in-progress row may still be working on it."""
    host, _, pid = worker.rpartition(":")
    if not worker or not pid.isdigit():
        return False
    if host == socket.gethostname():
        return _pid_alive(int(pid))
    return updated_at is not None and utcnow() - updated_at < STALE_AFTER


def public_summary(summary: dict[str, Any], hidden: bool) -> dict[str, Any]:
    """What a submitter may see: everything, or for a hidden split only the aggregate scores."""
    if not hidden:
        return dict(summary)
    return {k: summary[k] for k in PUBLIC_SUMMARY_KEYS if k in summary}


def _check_name(kind: str, value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise StoreError(f"the {kind} name must not be empty")
    if len(value) > MAX_NAME or any(ord(c) < 32 for c in value):
        raise StoreError(f"{kind} name {value[:40]!r}: at most {MAX_NAME} printable characters")
    return value


def variant_target(split: str, variant: str | None) -> tuple[str, str | None, str]:
    """(target split, variant, base split) of a request: `--split test --variant blur` and
    `--split test_blur` both name the variant `blur` of base split `test`."""
    base, named = parse_split_name(split)
    if variant:
        if variant == "all" or len(normalize_variants([variant])) != 1:
            raise StoreError(f"--variant {variant}: one of {', '.join(VARIANTS)}")
        variant = normalize_variants([variant])[0]
        if named is not None and named != variant:
            raise StoreError(f"--split {split} is already the '{named}' variant; --variant {variant} contradicts it")
        if named is None:
            base = split
    else:
        variant = named
    return (variant_split_name(base, variant) if variant else split), variant, base


def _check_manifest_split(manifest: Manifest, target: str, path: Path) -> None:
    """A manifest that names its split must name the target, and a variant submission's manifest
    must name it: predictions made on degraded images never land on the clean board, nor clean ones
    on a variant (whatever the protocol). `mmtt run` writes the split into every manifest."""
    if not manifest.split and parse_split_name(target)[1]:
        raise StoreError(f"{path}: manifest.json names no split; a robustness-variant submission must say it was "
                         f"made for '{target}' (\"split\": \"{target}\"; `mmtt run --robust` writes it)")
    if manifest.split and manifest.split != target:
        made_variant = parse_split_name(manifest.split)[1]
        hint = (f"submit it with --variant {made_variant}" if made_variant and not parse_split_name(target)[1]
                else "submit it to the split it was made for")
        raise StoreError(f"{path}: manifest.json says the predictions were made for split '{manifest.split}', "
                         f"not '{target}'; {hint}")


def default_scorer(path: Path, split: DataSplit, request: SubmitRequest):
    from benchmark.scoring.score import score_submission

    return score_submission(path, split, request.options)


def submit(board: Board, request: SubmitRequest, *, scorer: Callable | None = None) -> SubmitOutcome:
    """Validate, score and store `request.path`; raises a `BenchmarkError` (after recording a
    failed row) when anything is wrong. `scorer(path, split, request)` defaults to the real one."""
    state = _State(entry_name=(request.name or "").strip(), team_name=(request.team or "").strip(),
                   split_name=request.split, source_name=Path(request.path).name[:500], request=request)
    try:
        state.split_name = request.target_split
    except BenchmarkError:
        pass   # reported (and recorded) by _submit
    try:
        return _submit(board, request, scorer or default_scorer, state)
    except BaseException as exc:
        _record_failure(board, state, exc)
        raise


def _submit(board: Board, request: SubmitRequest, scorer: Callable, state: _State) -> SubmitOutcome:
    path = Path(request.path)
    target, variant, base = variant_target(request.split, request.variant)
    _check_name("entry", request.name)
    if not path.exists():
        raise StoreError(f"{path}: submission not found")
    if not (path.is_dir() or is_archive(path)):
        raise StoreError(f"{path}: submit a folder or a .zip/.tar.gz archive holding predictions.jsonl, "
                         "masks/ and manifest.json")
    limits = board.db.read(lambda s: (rule_value(s, "max_upload_mb", request.max_upload_mb),
                                      rule_value(s, "daily_limit", request.daily_limit)))
    max_mb, daily_limit = limits
    state.size = path.stat().st_size if path.is_file() else tree_size(path)
    if state.size > max_mb * MIB:
        raise RuleError(f"{path}: upload is {state.size / MIB:.1f} MiB, over the limit of {max_mb:g} MiB")

    with open_submission(path) as sub:
        manifest = read_manifest(sub, required=True)
        assert manifest is not None
        state.team_name = _check_name("team", request.team or manifest.team)
        _check_manifest_split(manifest, target, path)
        tree = board.files.put_tree(sub.root)
        state.files_hash = tree.hash
        checkpoint("stored")
        reservation = board.db.write(lambda s: _reserve(s, state, daily_limit), "reserving the submission")
        if isinstance(reservation, SubmitOutcome):
            return reservation
        state.submission_id = reservation
        checkpoint("reserved")
        board.db.write(lambda s: _set_status(s, reservation, "validating"), "updating the status")
        split = load_split(request.data, target)
        fingerprint = split.fingerprint
        board.db.write(lambda s: _set_status(s, reservation, "scoring", state, fingerprint), "updating the status")
        result = scorer(sub.root, split, request)   # validates every line and file, then scores
        checkpoint("scored")
        prepared = prepare(result)
        return board.db.write(lambda s: _finalize(s, state, manifest, fingerprint, len(split), result, prepared,
                                                  variant, base), "storing the scores")


def _match(state: _State):
    r = state.request
    return (Submission.entry_name == state.entry_name, Submission.team_name == state.team_name,
            Submission.split_name == state.split_name, Submission.files_hash == state.files_hash,
            Submission.protocol == r.protocol, Submission.allow_missing.is_(r.allow_missing),
            Submission.options == r.options_json())


def _variant_split(session: Session, name: str, base: str, variant: str) -> Split | None:
    """The board's row of variant split `name` (None when not registered yet), checked to be the
    `variant` of `base`; the base split must be on the board."""
    base_row = session.scalar(select(Split).where(Split.name == base))
    if base_row is None:
        raise StoreError(f"split '{base}' is not on the board: register it and its variants with "
                         f"`mmtt split add --split {base} --robust`, and submit the clean run first")
    row = session.scalar(select(Split).where(Split.name == name))
    if row is not None and (row.base_split_id != base_row.id or row.variant != variant):
        raise StoreError(f"split '{name}' is on the board but not as the '{variant}' variant of '{base}'; "
                         f"register it with `mmtt split add --split {base} --robust`")
    return row


def _clean_submission(session: Session, entry: Entry | None, entry_name: str, base: str, protocol: str) -> int:
    """The id of the entry's current scored clean submission on `base` (what a variant links to)."""
    found = None
    if entry is not None:
        found = session.scalar(
            select(Evaluation.submission_id).join(Split, Evaluation.split_id == Split.id)
            .join(Submission, Evaluation.submission_id == Submission.id)
            .where(Evaluation.entry_id == entry.id, Split.name == base, Evaluation.protocol == protocol,
                   Evaluation.current.is_(True), Submission.status == "scored"))
    if found is None:
        raise StoreError(f"entry '{entry_name}' has no scored {protocol} submission on split '{base}': a robustness "
                         "variant is linked to the entry's clean submission by entry name; submit the clean run first")
    return found


def _board_split(session: Session, name: str, fingerprint: str, n_items: int | None = None) -> Split | None:
    """The board's row for split `name` (created when `n_items` is given), checked against the
    fingerprint of the data at hand; None when absent and not to be created."""
    row = session.scalar(select(Split).where(Split.name == name))
    if row is None:
        if n_items is None:
            return None
        row = Split(name=name, fingerprint=fingerprint, n_items=n_items, hidden=False)
        session.add(row)
        session.flush()
    elif row.fingerprint != fingerprint:
        raise StoreError(f"split '{name}': the data given has fingerprint {fingerprint[:19]}..., the board's is "
                         f"{row.fingerprint[:19]}...; wrong --data, or run `mmtt split add --update` and "
                         "`mmtt rescore` after a change of truth")
    return row


def _reserve(session: Session, state: _State, daily_limit: int) -> int | SubmitOutcome:
    """Check the rules and write the `received` row (or find the work already done or abandoned).
    A new split is registered only by `_finalize`, so a failure leaves no split row behind."""
    request = state.request
    split_row = session.scalar(select(Split).where(Split.name == state.split_name))
    entry = session.scalar(select(Entry).where(Entry.name == state.entry_name))
    if entry is not None and entry.team.name != state.team_name:
        raise StoreError(f"entry name '{state.entry_name}' belongs to team '{entry.team.name}'; choose another --name")
    _, variant, base = variant_target(state.split_name, None)
    if variant is not None:   # fail before any scoring when there is nothing to link to
        _variant_split(session, state.split_name, base, variant)
        _clean_submission(session, entry, state.entry_name, base, request.protocol)
    elif split_row is not None and split_row.base_split_id is not None:
        raise StoreError(f"split '{split_row.name}' is a robustness variant; submit with --variant")
    if entry is not None and split_row is not None:   # the same files, already the entry's up-to-date score
        current = session.scalar(
            select(Evaluation).join(Submission, Evaluation.submission_id == Submission.id)
            .where(Evaluation.current.is_(True), Evaluation.entry_id == entry.id, Evaluation.split_id == split_row.id,
                   Evaluation.protocol == request.protocol, Evaluation.dataset_fingerprint == split_row.fingerprint,
                   Evaluation.metric_version == METRIC_VERSION, Submission.status == "scored", *_match(state)))
        if current is not None:
            return SubmitOutcome(submission_id=current.submission_id, entry=entry.name, team=entry.team.name,
                                 split=split_row.name, hidden=split_row.hidden, duplicate=True,
                                 files_hash=state.files_hash or "",
                                 summary=public_summary(full_summary(session, current), split_row.hidden))
    me = worker_id()
    for row in session.scalars(select(Submission).where(*_match(state), Submission.status.in_(IN_PROGRESS))
                               .order_by(Submission.id)):
        if not worker_alive(row.worker, row.updated_at):
            row.worker, row.status, row.message = me, "received", "resumed after an interrupted run"
            session.flush()
            return row.id
    if not request.baseline:
        check_daily_limit(session, state.team_name, state.split_name, daily_limit)
    row = Submission(entry_name=state.entry_name, team_name=state.team_name, split_name=state.split_name,
                     split_id=split_row.id if split_row else None, entry_id=entry.id if entry else None,
                     status="received",
                     source_name=state.source_name, files_hash=state.files_hash, files_size=state.size,
                     protocol=request.protocol, allow_missing=request.allow_missing, options=request.options_json(),
                     baseline=request.baseline, worker=me)
    session.add(row)
    session.flush()
    return row.id


def _set_status(session: Session, submission_id: int, status: str, state: _State | None = None,
                fingerprint: str | None = None) -> None:
    """Advance an in-progress row (checking the data's fingerprint against the board's, if given)."""
    row = session.get(Submission, submission_id)
    if row is None or row.status not in IN_PROGRESS or row.worker != worker_id():
        raise StoreError(f"submission #{submission_id} was taken over by another process")
    if state is not None and fingerprint is not None:
        _board_split(session, state.split_name, fingerprint)
    row.status = status


def _authors(manifest: Manifest) -> list[str]:
    names = manifest.authors.replace(";", ",").split(",") if manifest.authors else []
    return list(dict.fromkeys(n.strip()[:MAX_NAME] for n in names if n.strip()))


def _finalize(session: Session, state: _State, manifest: Manifest, fingerprint: str, n_items: int, result,
              prepared, variant: str | None = None, base: str | None = None) -> SubmitOutcome:
    request = state.request
    row = session.get(Submission, state.submission_id)
    if row is None or row.status not in IN_PROGRESS or row.worker != worker_id():
        raise StoreError(f"submission #{state.submission_id} was taken over by another process")
    clean_id = None
    if variant is not None:   # checked again here: the clean one may have been withdrawn meanwhile
        assert base is not None
        existing = _variant_split(session, state.split_name, base, variant)
        clean_id = _clean_submission(session, session.scalar(select(Entry).where(Entry.name == state.entry_name)),
                                     state.entry_name, base, request.protocol)
        if existing is None:
            base_row = session.scalar(select(Split).where(Split.name == base))
            assert base_row is not None
            session.add(Split(name=state.split_name, fingerprint=fingerprint, n_items=n_items, hidden=base_row.hidden,
                              base_split_id=base_row.id, variant=variant))
            session.flush()
    split_row = _board_split(session, state.split_name, fingerprint, n_items)
    assert split_row is not None
    team = session.scalar(select(Team).where(Team.name == state.team_name))
    if team is None:
        team = Team(name=state.team_name)
        session.add(team)
        session.flush()
    have = set(session.scalars(select(Author.name).where(Author.team_id == team.id)))
    session.add_all(Author(team_id=team.id, name=n) for n in _authors(manifest) if n not in have)
    tasks = list(result.summary.get("tasks") or manifest.tasks)
    entry = session.scalar(select(Entry).where(Entry.name == state.entry_name))
    if entry is None:
        entry = Entry(team_id=team.id, name=state.entry_name, model=manifest.model[:MAX_NAME], tasks="",
                      baseline=request.baseline, visibility="private" if request.private else "public")
        session.add(entry)
    elif entry.team_id != team.id:
        raise StoreError(f"entry name '{state.entry_name}' belongs to another team; choose another --name")
    else:
        entry.model = manifest.model[:MAX_NAME]
        entry.baseline = entry.baseline or request.baseline
        if request.private:
            entry.visibility = "private"
        tasks = [t for t in TASKS if t in set(tasks) | set(filter(None, entry.tasks.split(",")))]
    entry.tasks = ",".join(tasks)
    entry.description = manifest.description
    entry.authors = manifest.authors
    entry.paper_url = manifest.paper_url[:500]
    entry.code_url = manifest.code_url[:500]
    session.flush()
    summary = result.summary
    warnings = summary.get("warnings") or []
    row.entry_id, row.split_id, row.status, row.worker = entry.id, split_row.id, "scored", ""
    row.scored_at = utcnow()
    row.submission_hash = summary.get("submission_hash")
    row.clean_submission_id = clean_id
    row.message = f"{len(warnings)} warning(s); first: {warnings[0]}"[:MAX_MESSAGE] if warnings else ""
    add_evaluation(session, submission=row, entry=entry, split=split_row, result=result, prepared=prepared)
    refresh_current(session, entry.id, split_row.id, summary["protocol"])
    checkpoint("commit")
    return SubmitOutcome(submission_id=row.id, entry=entry.name, team=team.name, split=split_row.name,
                         hidden=split_row.hidden, duplicate=False, files_hash=state.files_hash or "",
                         summary=public_summary(summary, split_row.hidden))


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, BenchmarkError):
        text = exc.report()
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    else:
        text = f"internal error: {type(exc).__name__}: {exc}"
    return text[:MAX_MESSAGE]


def _record_failure(board: Board, state: _State, exc: BaseException) -> None:
    """Best effort: mark the reserved row failed, or add a failed row; never hides `exc`."""
    message = _failure_message(exc)
    request = state.request

    def write(session: Session) -> None:
        if state.submission_id is not None:
            row = session.get(Submission, state.submission_id)
            if row is not None and row.status in IN_PROGRESS and row.worker == worker_id():
                row.status, row.message, row.worker = "failed", message, ""
            return
        session.add(Submission(entry_name=state.entry_name[:MAX_NAME], team_name=state.team_name[:MAX_NAME],
                               split_name=state.split_name[:MAX_NAME], status="failed", message=message,
                               source_name=state.source_name, files_hash=state.files_hash, files_size=state.size,
                               protocol=request.protocol, allow_missing=request.allow_missing,
                               options=request.options_json(), baseline=request.baseline, worker=""))

    try:
        board.db.write(write, "recording the failure")
    except Exception:  # noqa: BLE001 - the original error is what the user must see
        pass
