"""Web submissions go through the submission API: the page uploads, the service's workers score.

The board itself never scores nor writes: `handle_upload` checks what it can see (a name, an
archive's name, the size against the board's cap), then posts the archive to the API
(`benchmark.service.client`), which checks the token, keeps the files, applies the rules and
queues the job. `follow` reads the job's state back. Every refusal comes back in plain words,
every problem listed.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError
from leaderboard_app import queries
from leaderboard_app.config import AppConfig
from submissions.archive import ARCHIVE_SUFFIXES

MIB = 1024 * 1024


@dataclass
class IntakeResult:
    ok: bool
    message: str
    problems: list[str] = field(default_factory=list)
    answer: dict[str, Any] = field(default_factory=dict)   # the API's answer (submission_id, status, ...)


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
                  allow_missing: bool = False, variant: str | None = None) -> IntakeResult:
    """Post an uploaded archive to the submission API; never raises for a user's mistake.
    `variant`: a robustness variant of `split` (its predictions go to that variant's split)."""
    from benchmark.data.robust import variant_split_name
    from benchmark.service.client import submit_archive

    if cfg.api is None:
        return _refuse("Web submissions are closed on this board: it was started without the submission API "
                       "(`--api URL`).")
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
        target = variant_split_name(split, variant) if variant else split
        try:
            answer = submit_archive(cfg.api, token or "", path, name=name, split=target, allow_missing=allow_missing)
        except BenchmarkError as exc:
            return IntakeResult(ok=False, message=str(exc), problems=list(exc.problems))
        except Exception as exc:  # noqa: BLE001 - an internal fault, still told in one line (no server paths)
            logging.getLogger("mmtt.board").error("upload failed", exc_info=exc)
            return IntakeResult(ok=False, message=f"internal error while submitting ({type(exc).__name__}); the "
                                                  "details are in the server's log")
    if answer.get("status") == "scored":
        return IntakeResult(ok=True, answer=answer, message=f"Already on the board (identical files): submission "
                                                            f"#{answer['submission_id']}, entry '{answer['entry']}'.")
    return IntakeResult(ok=True, answer=answer,
                        message=f"Queued: submission #{answer['submission_id']}, entry '{answer['entry']}' of team "
                                f"'{answer['team']}' on split '{answer['split']}' (position {answer.get('position')}).")


def follow(cfg: AppConfig, token: str, submission_id: int) -> dict[str, Any]:
    """The submission's state from the API (`queued` / `running` / `scored` / `failed`)."""
    from benchmark.service.client import status

    assert cfg.api is not None
    return status(cfg.api, token, submission_id)
