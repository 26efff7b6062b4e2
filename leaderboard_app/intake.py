"""Web submissions: token first, then size, then the store's own `submit` (validate, score, store).

Order matters: nothing is written — no file kept, no row — before the token checks out and the
upload is within the cap. After that, the store's atomic submit takes over: any problem it finds
is recorded as a failed submission and reported here in plain words, every problem listed.
The team is the token's (a token is issued to one team), whatever the manifest says.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmark.errors import BenchmarkError
from benchmark.scoring.options import ScoreOptions
from leaderboard_app import queries
from leaderboard_app.config import AppConfig
from submissions.archive import ARCHIVE_SUFFIXES

MIB = 1024 * 1024


@dataclass
class IntakeResult:
    ok: bool
    message: str
    problems: list[str] = field(default_factory=list)
    outcome: Any = None            # benchmark.store.submission.SubmitOutcome on success
    written: bool = False          # whether the board was touched (False for token/size/name refusals)


def _refuse(message: str, problems: list[str] | None = None) -> IntakeResult:
    return IntakeResult(ok=False, message=message, problems=problems or [])


def safe_filename(name: str) -> str | None:
    """The upload's name reduced to `[A-Za-z0-9._-]` with its archive suffix kept; None if it is
    not an archive we accept."""
    base = Path(name or "").name
    lower = base.lower()
    suffix = next((s for s in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)
    if suffix is None:
        return None
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base[: -len(suffix)]).strip("._")[:80] or "submission"
    return stem + suffix


def handle_upload(cfg: AppConfig, *, token: str, name: str, split: str, filename: str, payload: bytes,
                  allow_missing: bool = False, variant: str | None = None,
                  scorer: Callable | None = None) -> IntakeResult:
    """Check, then submit an uploaded archive; never raises for a user's mistake."""
    from benchmark.store.submission import SubmitRequest, submit

    record = queries.verify_token(cfg.db, token or "")
    if record is None:
        return _refuse("This submission token is not valid (unknown, mistyped or revoked). "
                       "Tokens are issued by the board's maintainers; nothing was submitted.")
    if cfg.data is None:
        return _refuse("Web submissions are closed on this server: it was started without the data root "
                       "(`--data`), which scoring needs.")
    cap = queries.upload_cap_mb(cfg.db, cfg.max_upload_mb)
    if len(payload) > cap * MIB:
        return _refuse(f"The upload is {len(payload) / MIB:.1f} MiB, over this board's limit of {cap:g} MiB.")
    safe = safe_filename(filename)
    if safe is None:
        return _refuse(f"'{Path(filename or '').name}' is not an archive: upload a .zip or .tar.gz holding "
                       "predictions.jsonl, masks/ and manifest.json.")
    if not payload:
        return _refuse("The uploaded file is empty.")
    name = (name or "").strip()
    if not name:
        return _refuse("Give the entry a name (it is how the board lists it).")
    with tempfile.TemporaryDirectory(prefix="mmtt-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(payload)
        options = ScoreOptions(allow_missing=allow_missing, skip=() if cfg.meteor else ("meteor",), n_boot=cfg.n_boot)
        request = SubmitRequest(path=path, data=cfg.data, name=name, split=split, variant=variant or None,
                                team=record.team, options=options, max_upload_mb=cap)
        try:
            with queries.submit_board(cfg.db, cfg.files) as board:
                outcome = submit(board, request, scorer=scorer)
        except BenchmarkError as exc:
            queries.invalidate()
            return IntakeResult(ok=False, message=str(exc), problems=list(exc.problems), written=True)
        except Exception as exc:  # noqa: BLE001 - an internal fault, still told in one line
            queries.invalidate()
            return IntakeResult(ok=False, message=f"internal error while scoring: {type(exc).__name__}: {exc}",
                                written=True)
    queries.invalidate()
    what = "Already on the board (identical files)" if outcome.duplicate else "Scored and stored"
    return IntakeResult(ok=True, message=f"{what}: submission #{outcome.submission_id}, entry '{outcome.entry}' "
                                         f"of team '{outcome.team}' on split '{outcome.split}'.",
                        outcome=outcome, written=True)
