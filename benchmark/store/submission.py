"""`mmtt submit`: validate, score and store a submission — all of it, or nothing but a failed row.

Order of work, and why:
1. checks that need no database (a folder or archive, the upload size, normalised entry and team
   names, the split, a safe submission and a valid manifest);
2. a read of the rules (entry name not another team's, daily limit), then the files are hashed
   (identified, not yet kept: an upload refused by a rule or by validation keeps no file);
3. a short write transaction reserves a `received` submission row after checking the rules
   (daily limit, entry name owned by the team) — serialized by `BEGIN IMMEDIATE`, so eight
   processes cannot all squeeze under the limit;
4. `validating`: the split's truth fingerprint is checked against the board's;
   `scoring`: the scorer validates every line and file, then scores, with no transaction open
   (it can take minutes; the board stays writable); then the files are kept, content-addressed
   (idempotent: a re-run stores nothing new);
5. one write transaction creates the team, entry, evaluation, scores, breakdowns and per-sample
   rows and marks the submission `scored`. Until it commits, no entry and no score exists.
Any failure marks the reserved row `failed` with the reason (or inserts a failed row); nothing
else changes. A failed row that got as far as being identified (hashed) counts against the daily
limit, so a token holder cannot make the board work without end. A process killed at any point leaves at most an in-progress row whose worker is
dead: running the same command again takes that row over and finishes the work.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select, update
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
from benchmark.store.names import MAX_NAME, name_key, normalise_name
from benchmark.store.rules import check_daily_limit, lock_team_split, rule_value
from benchmark.store.scores import add_evaluation, full_summary, prepare, refresh_current
from submissions.archive import is_archive
from submissions.format import DEFAULT_LIMITS, TASKS, Manifest
from submissions.reader import open_submission, read_manifest

MIB = 1024 * 1024
MAX_MESSAGE = 8000
STALE_AFTER = timedelta(hours=6)   # an in-progress row from another host counts as abandoned after this
DEFAULT_LEASE_S = 60.0             # queued work: a row whose heartbeat stopped this long is taken over ($MMTT_LEASE_S)
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


def _canonical_names(session: Session, state: _State) -> None:
    """Give `state` the board's spelling of its team and entry when a name with the same key
    (case, width, compatibility forms) is already there: one team, one entry, however typed."""
    team_key = name_key(state.team_name)
    known = [*session.scalars(select(Team.name)), *session.scalars(select(Submission.team_name).distinct())]
    state.team_name = next((n for n in known if name_key(n) == team_key), state.team_name)
    entry_key = name_key(state.entry_name)
    entries = [*session.scalars(select(Entry.name))]
    state.entry_name = next((n for n in entries if name_key(n) == entry_key), state.entry_name)


def _check_rules(session: Session, state: _State, daily_limit: int, *, in_progress: bool = True) -> Entry | None:
    """The rules every submission must pass before anything of it is kept or reserved: the
    entry name is not another team's, the team is under its daily limit. Returns the entry."""
    _canonical_names(session, state)
    entry = session.scalar(select(Entry).where(Entry.name == state.entry_name))
    if entry is not None and name_key(entry.team.name) != name_key(state.team_name):
        raise StoreError(f"entry name '{state.entry_name}' belongs to team '{entry.team.name}'; choose another --name")
    if not state.request.baseline:
        check_daily_limit(session, state.team_name, state.split_name, daily_limit, in_progress=in_progress)
    return entry


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
    state = _new_state(request)
    try:
        daily_limit, limits = _check_upload(board, request, state)
        with open_submission(Path(request.path), limits=limits) as sub:
            manifest, reservation = _keep_and_reserve(board, sub, state, daily_limit, limits, owner=worker_id(),
                                                      keep=False)
            if isinstance(reservation, SubmitOutcome):
                return reservation
            return _score_and_store(board, state, manifest, sub.root, scorer or default_scorer,
                                    keep_from=str(sub.source))
    except BaseException as exc:
        _record_failure(board, state, exc)
        raise


def enqueue(board: Board, request: SubmitRequest) -> int | SubmitOutcome:
    """The submission API's intake: steps 1-3 only. The files are kept and a `received` row owned
    by nobody is reserved (the rules checked in the same transaction); a scoring worker claims it
    later (`claim` + `score_claimed`). Returns its id, or the outcome when the very same files are
    already the entry's current score. Refusals are recorded as failed rows, as by `submit`."""
    state = _new_state(request)
    try:
        daily_limit, limits = _check_upload(board, request, state)
        with open_submission(Path(request.path), limits=limits) as sub:
            _, reservation = _keep_and_reserve(board, sub, state, daily_limit, limits, owner="", keep=True)
        return reservation
    except BaseException as exc:
        _record_failure(board, state, exc)
        raise


def _new_state(request: SubmitRequest) -> _State:
    try:
        split_name = request.target_split
    except BenchmarkError:
        split_name = request.split   # a bad --variant: refused (and recorded) by the checks
    return _State(entry_name=_printable(request.name), team_name=_printable(request.team),
                  split_name=split_name, source_name=Path(request.path).name[:500], request=request)


def _printable(name: str | None) -> str:
    """A name as a failed row may record it (whatever it holds: the row explains the refusal)."""
    return (name or "").strip().encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_NAME]


def _check_upload(board: Board, request: SubmitRequest, state: _State):
    """Checks that need no transaction (name, path, size); returns the daily limit in force and
    the submission limits the split's size allows."""
    path = Path(request.path)
    variant_target(request.split, request.variant)   # a bad --variant is refused here
    state.entry_name = normalise_name("entry", request.name)
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
        raise RuleError(f"{path.name}: upload is {state.size / MIB:.1f} MiB, over the limit of {max_mb:g} MiB")
    split = load_split(request.data, request.target_split)   # its size bounds what an archive may unpack
    return daily_limit, DEFAULT_LIMITS.for_split(len(split))


def _keep_and_reserve(board: Board, sub, state: _State, daily_limit: int, limits, *, owner: str, keep: bool):
    """Read the manifest, identify the files by content hash (and keep them when `keep`: the
    queue's workers read them from the store), then reserve the row under the rules."""
    request = state.request
    manifest = read_manifest(sub, required=True, limits=limits)
    assert manifest is not None
    state.team_name = normalise_name("team", request.team or manifest.team)
    _check_manifest_split(manifest, request.target_split, Path(request.path))
    # the rules before any file is kept (checked again when reserving)
    board.db.read(lambda s: _check_rules(s, state, daily_limit, in_progress=False), "checking the rules")
    if keep:
        state.files_hash = _put_tree(board, sub.root, str(sub.source)).hash
        checkpoint("stored")
    else:   # scored in this process: the files are kept only once they scored
        state.files_hash = board.files.hash_tree(sub.root)
    reservation = board.db.write(lambda s: _reserve(s, state, daily_limit, owner), "reserving the submission")
    if not isinstance(reservation, SubmitOutcome):
        state.submission_id = reservation
        checkpoint("reserved")
    return manifest, reservation


def _score_and_store(board: Board, state: _State, manifest: Manifest, root: Path, scorer: Callable, *,
                     keep_from: str | None = None) -> SubmitOutcome:
    """Steps 4-5 for a reserved row this process owns; the row's lease is renewed meanwhile.
    `keep_from`: the files are not kept yet; keep them (named so in messages) once they scored."""
    request, submission_id = state.request, state.submission_id
    assert submission_id is not None
    _, variant, base = variant_target(request.split, request.variant)
    with Heartbeat(board, submission_id):
        board.db.write(lambda s: _set_status(s, submission_id, "validating"), "updating the status")
        split = load_split(request.data, request.target_split)
        fingerprint = split.fingerprint
        board.db.write(lambda s: _set_status(s, submission_id, "scoring", state, fingerprint), "updating the status")
        result = scorer(root, split, request)   # validates every line and file, then scores
        checkpoint("scored")
        if keep_from is not None:
            if _put_tree(board, root, keep_from).hash != state.files_hash:
                raise StoreError(f"{keep_from}: the files changed while the submission was being scored; submit again")
            checkpoint("stored")
        prepared = prepare(result)
        return board.db.write(lambda s: _finalize(s, state, manifest, fingerprint, len(split), result, prepared,
                                                  variant, base), "storing the scores")


# ----------------------------------------------------------------------------- queued work
def lease_s() -> float:
    """Seconds without a heartbeat after which an in-progress row counts as abandoned."""
    return float(os.environ.get("MMTT_LEASE_S") or DEFAULT_LEASE_S)


class Heartbeat:
    """Renews the lease of an in-progress row (its `updated_at`) every third of the lease, from a
    thread, while the work goes on; a row whose heartbeat stops is taken over by another worker."""

    def __init__(self, board: Board, submission_id: int) -> None:
        self.board, self.submission_id, self.me = board, submission_id, worker_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{submission_id}", daemon=True)

    def _beat(self, session: Session) -> None:
        session.execute(update(Submission).where(Submission.id == self.submission_id, Submission.worker == self.me,
                                                 Submission.status.in_(IN_PROGRESS)).values(updated_at=utcnow()))

    def _run(self) -> None:
        while not self._stop.wait(lease_s() / 3):
            try:
                self.board.db.write(self._beat, "renewing a lease")
            except Exception:  # noqa: BLE001 - a missed beat only risks a take-over, which is safe
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _abandoned(row: Submission, me: str, now: datetime) -> bool:
    """Whether nobody works on an in-progress row: no owner, its owner is this (idle) process, a
    dead process on this host, or a lease not renewed in time."""
    if row.worker in ("", me):
        return True
    host, _, pid = row.worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
        return True
    return row.updated_at is None or now - row.updated_at > timedelta(seconds=lease_s())


def claim(board: Board, submission_id: int) -> SubmitRequest | None:
    """Take a queued (or abandoned) row for this process, atomically: a compare-and-set UPDATE on
    (status, worker), so of two workers given the same job exactly one wins. None when the job is
    done, withdrawn, unknown, or held by a live worker (a duplicate delivery: nothing to do)."""
    me = worker_id()

    def take(session: Session) -> tuple[str, str, str, str, bool, str | None, bool] | None:
        row = session.get(Submission, submission_id)
        if row is None or row.status not in IN_PROGRESS or not _abandoned(row, me, utcnow()):
            return None
        taken = session.execute(
            update(Submission).where(Submission.id == submission_id, Submission.status == row.status,
                                     Submission.worker == row.worker)
            .values(status="received", worker=me, updated_at=utcnow(),
                    message="" if row.worker == "" else f"taken over from {row.worker}"[:MAX_MESSAGE]))
        if taken.rowcount != 1:
            return None
        return (row.entry_name, row.team_name, row.split_name, row.protocol, row.allow_missing, row.options,
                row.baseline)

    got = board.db.write(take, "claiming a queued submission")
    if got is None:
        return None
    entry, team, split, protocol, allow_missing, options, baseline = got
    stored = ScoreOptions.from_stored(json.loads(options or "{}"), protocol=protocol, allow_missing=allow_missing)
    return SubmitRequest(path=Path(), data=Path(), name=entry, split=split, team=team, baseline=baseline,
                         options=stored)


def score_claimed(board: Board, submission_id: int, request: SubmitRequest, *,
                  scorer: Callable | None = None) -> SubmitOutcome:
    """Score a row `claim`ed by this process from its kept files and store the result (or mark
    it failed with every problem). `request` carries the data root and this machine's options."""
    files_hash = board.db.read(lambda s: s.get(Submission, submission_id).files_hash, "reading the submission")
    state = _State(entry_name=request.name, team_name=request.team or "", split_name=request.split,
                   source_name="", request=request, files_hash=files_hash, submission_id=submission_id)
    try:
        with tempfile.TemporaryDirectory(prefix="mmtt-job-") as tmp:
            root = board.files.materialize(files_hash or "", Path(tmp) / "submission")
            with open_submission(root) as sub:
                manifest = read_manifest(sub, required=True)
                assert manifest is not None
                return _score_and_store(board, state, manifest, sub.root, scorer or default_scorer)
    except BenchmarkError as exc:
        _record_failure(board, state, exc)
        raise


def release(board: Board, submission_id: int) -> None:
    """Hand a claimed row back to the queue (after an internal fault, so a retry can take it)."""
    me = worker_id()
    board.db.write(lambda s: s.execute(
        update(Submission).where(Submission.id == submission_id, Submission.worker == me,
                                 Submission.status.in_(IN_PROGRESS))
        .values(status="received", worker="")), "releasing a submission")


# A queued row dated here is one whose job could not be sent (the broker was down or busy): it is
# past any `stuck_after_s`, so the next sweep sends it, instead of after the stuck delay.
UNSENT_AT = datetime(2000, 1, 1, tzinfo=timezone.utc)


def mark_unsent(board: Board, submission_id: int) -> None:
    """Have the next sweep send the job of a queued row whose sending failed."""
    board.db.write(lambda s: s.execute(
        update(Submission).where(Submission.id == submission_id, Submission.status == "received",
                                 Submission.worker == "").values(updated_at=UNSENT_AT)),
        "marking a submission for re-sending")


def requeue_abandoned(board: Board, *, stuck_after_s: float) -> list[int]:
    """Rows a worker must (re)deliver: in progress but abandoned (handed back to the queue), and
    queued rows untouched for `stuck_after_s` (a broker that lost its messages) or whose sending
    failed (`mark_unsent`). Their `updated_at` is renewed, so one sweep re-sends each once; claims
    make duplicates harmless."""
    me = worker_id()

    def sweep(session: Session) -> list[int]:
        now, ids = utcnow(), []
        for row in session.scalars(select(Submission).where(Submission.status.in_(IN_PROGRESS))
                                   .order_by(Submission.id)):
            if row.worker and row.worker != me and _abandoned(row, me, now):
                row.status, row.message, row.worker = "received", f"re-queued: {row.worker} was lost"[:MAX_MESSAGE], ""
                ids.append(row.id)
            elif row.worker == "" and row.updated_at is not None and \
                    now - row.updated_at > timedelta(seconds=stuck_after_s):
                row.updated_at = now
                ids.append(row.id)
        return ids

    return board.db.write(sweep, "re-queuing abandoned submissions")


def queue_position(session: Session, submission_id: int) -> int:
    """1 for the next queued row to be scored, and so on."""
    return 1 + int(session.scalar(select(func.count(Submission.id)).where(
        Submission.status == "received", Submission.worker == "", Submission.id < submission_id)) or 0)


def _put_tree(board: Board, root: Path, label: str):
    """Keep the submission's files by content hash; a full disk is a plain message."""
    try:
        return board.files.put_tree(root)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"{label}: no space left on the board's disk while keeping the files; "
                             "nothing was submitted") from None
        raise


def _match(state: _State):
    r = state.request
    return (Submission.entry_name == state.entry_name, Submission.team_name == state.team_name,
            Submission.split_name == state.split_name, Submission.files_hash == state.files_hash,
            Submission.protocol == r.options.protocol, Submission.allow_missing.is_(r.options.allow_missing),
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


def _reserve(session: Session, state: _State, daily_limit: int, owner: str) -> int | SubmitOutcome:
    """Check the rules and write the `received` row (or find the work already done or abandoned),
    owned by `owner` (this process, or "" for the queue). A new split is registered only by
    `_finalize`, so a failure leaves no split row behind."""
    request = state.request
    lock_team_split(session, state.team_name, state.split_name)
    split_row = session.scalar(select(Split).where(Split.name == state.split_name))
    _canonical_names(session, state)
    entry = session.scalar(select(Entry).where(Entry.name == state.entry_name))
    if entry is not None and name_key(entry.team.name) != name_key(state.team_name):
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
                   Evaluation.protocol == request.options.protocol, Evaluation.dataset_fingerprint == split_row.fingerprint,
                   Evaluation.metric_version == METRIC_VERSION, Submission.status == "scored", *_match(state)))
        if current is not None:
            return SubmitOutcome(submission_id=current.submission_id, entry=entry.name, team=entry.team.name,
                                 split=split_row.name, hidden=split_row.hidden, duplicate=True,
                                 files_hash=state.files_hash or "",
                                 summary=public_summary(full_summary(session, current), split_row.hidden))
    for row in session.scalars(select(Submission).where(*_match(state), Submission.status.in_(IN_PROGRESS))
                               .order_by(Submission.id)):
        if row.worker == "" and owner == "":
            return row.id       # the same files are already queued: one job, not two
        if row.worker and not worker_alive(row.worker, row.updated_at):
            row.worker, row.status, row.message = owner, "received", "resumed after an interrupted run"
            session.flush()
            return row.id
    _check_rules(session, state, daily_limit)
    row = Submission(entry_name=state.entry_name, team_name=state.team_name, split_name=state.split_name,
                     split_id=split_row.id if split_row else None, entry_id=entry.id if entry else None,
                     status="received",
                     source_name=state.source_name, files_hash=state.files_hash, files_size=state.size,
                     protocol=request.options.protocol, allow_missing=request.options.allow_missing, options=request.options_json(),
                     baseline=request.baseline, worker=owner)
    session.add(row)
    session.flush()
    return row.id


def _set_status(session: Session, submission_id: int, status: str, state: _State | None = None,
                fingerprint: str | None = None) -> None:
    """Advance an in-progress row (checking the data's fingerprint against the board's, if given)."""
    row = session.get(Submission, submission_id, with_for_update=True)   # vs. a concurrent take-over
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
    row = session.get(Submission, state.submission_id, with_for_update=True)   # vs. a concurrent take-over
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
                               protocol=request.options.protocol, allow_missing=request.options.allow_missing,
                               options=request.options_json(), baseline=request.baseline, worker=""))

    try:
        board.db.write(write, "recording the failure")
    except Exception:  # noqa: BLE001 - the original error is what the user must see
        pass
