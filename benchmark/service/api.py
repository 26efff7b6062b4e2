"""The submission API (ASGI, FastAPI): intake, status, public boards; OpenAPI at /openapi.json.

Intake, in this order, so that a refusal writes nothing and an acknowledgement loses nothing:
1. the team token (header `Authorization: Bearer mmtt_...`), the split and the entry name;
2. the body (the raw .zip / .tar.gz) is streamed to a temporary file, counting against the
   upload cap — a client that disconnects half-way leaves nothing behind;
3. the store's `enqueue`: the files are kept by content hash, then the rules (daily limit, entry
   owned by the team) are checked and the `received` row written in one serialized transaction;
4. the job is sent to the queue and `202` answered with the submission id.
A job the broker cannot take at 4 (down, busy) is marked, and the workers' next sweep sends it.
The public side never serves per-sample scores or breakdowns of a hidden split, nor private entries.
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from benchmark import __version__
from benchmark.errors import BenchmarkError
from benchmark.service.settings import ServiceSettings
from benchmark.store.board import Board
from benchmark.store.errors import DailyLimitError, RuleError

MIB = 1024 * 1024
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
UPLOAD_BODY = {"requestBody": {"required": True, "description": "the submission archive (.zip or .tar.gz), raw",
                               "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}}}


def _token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HTTPException(401, "send the team's submission token as `Authorization: Bearer mmtt_...`")
    return value.strip()


def _safe_name(filename: str) -> str:
    base = Path(filename or "submission.zip").name
    lower = base.lower()
    suffix = next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)
    if suffix is None:
        raise HTTPException(415, f"'{base}' is not an archive: send a .zip or .tar.gz of the submission folder")
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in base[: -len(suffix)]).strip("._")[:80]
    return (stem or "submission") + suffix


def create_app(settings: ServiceSettings) -> FastAPI:
    """The ASGI app for `settings` (the board is opened — and brought to the current schema — here)."""
    from benchmark.data.split import available_splits
    from benchmark.service import queue

    queue.configure(settings.broker)
    board = Board.open(settings.db, settings.files)
    app = FastAPI(title="MMTT submission API", version=__version__,
                  description="Submit predictions to the MMTT leaderboard, follow their scoring, read the boards.")
    app.state.board = board
    app.router.on_shutdown.append(board.close)

    def read(fn, what: str = "reading the board"):
        return board.db.read(fn, what)

    def team_of(token: str) -> str:
        from benchmark.store.tokens import verify

        record = read(lambda s: verify(s, token), "checking the token")
        if record is None:
            raise HTTPException(401, "this submission token is not valid (unknown, mistyped or revoked)")
        return record.team

    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness, and the mode the service runs in."""
        return {"ok": True, "version": __version__, "embedded": settings.embedded}

    @app.post("/api/submissions", status_code=202, tags=["submissions"], openapi_extra=UPLOAD_BODY,
              responses={401: {"description": "no or bad token"}, 413: {"description": "over the upload cap"},
                         422: {"description": "refused: every problem listed"},
                         429: {"description": "daily limit reached"}})
    async def submit(request: Request, name: str = Query(..., description="entry name on the board"),
                     split: str = Query("test"), allow_missing: bool = Query(False),
                     filename: str = Query("submission.zip", description="the archive's name (.zip / .tar.gz)")):
        """Queue a submission archive (the raw body) for scoring; answers `202` with its id."""
        team = await run_in_threadpool(team_of, _token(request))
        safe = _safe_name(filename)
        if settings.data is not None and split not in available_splits(settings.data):
            raise HTTPException(404, f"no split '{split}' on this board")
        if not name.strip():
            raise HTTPException(422, "give the entry a name (it is how the board lists it)")
        cap_mb = await run_in_threadpool(_cap_mb, board, settings.max_upload_mb)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap_mb * MIB:
            raise HTTPException(413, f"the upload is {int(declared) / MIB:.1f} MiB, over the limit of {cap_mb:g} MiB")
        tmp_root = board.files.root / "uploads"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="up-") as tmp:
            path = Path(tmp) / safe
            size = 0
            try:
                with open(path, "wb") as out:
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > cap_mb * MIB:
                            raise HTTPException(413, f"the upload is over the limit of {cap_mb:g} MiB")
                        out.write(chunk)
            except ClientDisconnect:
                return Response(status_code=400)   # nobody to answer; nothing was kept
            if size == 0:
                raise HTTPException(422, "the uploaded file is empty")
            outcome = await run_in_threadpool(_enqueue, board, settings, path, name, split, team, allow_missing)
        if isinstance(outcome, int):
            await run_in_threadpool(queue.send, board, outcome)
            status = await run_in_threadpool(lambda: read(lambda s: _status(s, outcome, team)))
            return JSONResponse(status, status_code=202, headers={"Location": f"/api/submissions/{outcome}"})
        return JSONResponse({**outcome.to_json(), "status": "scored"}, status_code=200)

    @app.get("/api/submissions/{submission_id}", tags=["submissions"])
    def status(submission_id: int, request: Request) -> dict[str, Any]:
        """`queued` (with its position), `running`, `scored` (with the summary) or `failed` (every problem)."""
        team = team_of(_token(request))
        return read(lambda s: _status(s, submission_id, team))

    @app.get("/api/splits", tags=["board"])
    def splits() -> list[dict[str, Any]]:
        """The board's splits (hidden ones publish aggregate scores only)."""
        from sqlalchemy import select

        from benchmark.store.models import Split

        return read(lambda s: [{"name": r.name, "n_items": r.n_items, "hidden": r.hidden, "fingerprint": r.fingerprint}
                               for r in s.scalars(select(Split).order_by(Split.name))])

    @app.get("/api/boards/{split}.csv", tags=["board"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def board_csv(split: str, protocol: str = Query("strict"), metric: str | None = None) -> Response:
        """The board as CSV, one row per entry, each metric with its CI bounds (declared before
        the JSON route, which would take `test.csv` for a split name)."""
        return Response(board_to_csv(_board_rows(board, split, protocol, metric)), media_type="text/csv")

    @app.get("/api/boards/{split}", tags=["board"])
    def board_json(split: str, protocol: str = Query("strict"), metric: str | None = None) -> dict[str, Any]:
        """The public board of a split: ranked entries, metrics, 95% CIs and stamps."""
        started = time.perf_counter()
        rows = _board_rows(board, split, protocol, metric)
        return {"split": split, "protocol": protocol, "rows": rows,
                "read_ms": round((time.perf_counter() - started) * 1000, 2)}

    @app.exception_handler(BenchmarkError)
    async def user_error(request: Request, exc: BenchmarkError) -> JSONResponse:
        code = 429 if isinstance(exc, DailyLimitError) else 413 if isinstance(exc, RuleError) else 422
        return JSONResponse({"detail": str(exc), "problems": list(exc.problems)}, status_code=code)

    return app


def _cap_mb(board: Board, override: float | None) -> float:
    from benchmark.store.rules import rule_value

    return float(board.db.read(lambda s: rule_value(s, "max_upload_mb", override)))


def _enqueue(board: Board, settings: ServiceSettings, path: Path, name: str, split: str, team: str,
             allow_missing: bool):
    from benchmark.store.submission import SubmitRequest, enqueue

    request = SubmitRequest(path=path, data=settings.data or Path(), name=name, split=split, team=team,
                            options=settings.score.with_(protocol="strict", allow_missing=allow_missing, progress=False),
                            max_upload_mb=settings.max_upload_mb)
    return enqueue(board, request)


def _status(session, submission_id: int, team: str) -> dict[str, Any]:
    """What a team may know of its submission (another team's id is answered as unknown)."""
    from sqlalchemy import select

    from benchmark.store.models import Evaluation, Submission
    from benchmark.store.scores import full_summary
    from benchmark.store.submission import public_summary, queue_position

    row = session.get(Submission, submission_id)
    if row is None or row.team_name != team:
        raise HTTPException(404, f"no submission #{submission_id} of team '{team}'")
    out: dict[str, Any] = {"submission_id": row.id, "entry": row.entry_name, "team": row.team_name,
                           "split": row.split_name, "files_hash": row.files_hash,
                           "created_at": row.created_at.isoformat() if row.created_at else None}
    if row.status == "received" and row.worker == "":
        out.update(status="queued", position=queue_position(session, row.id))
    elif row.status in ("received", "validating", "scoring"):
        out.update(status="running", step=row.status)
    elif row.status == "scored":
        evaluation = session.scalar(select(Evaluation).where(Evaluation.submission_id == row.id)
                                    .order_by(Evaluation.id.desc()).limit(1))
        hidden = bool(row.split and row.split.hidden)
        out.update(status="scored", scored_at=row.scored_at.isoformat() if row.scored_at else None,
                   summary=public_summary(full_summary(session, evaluation), hidden) if evaluation else {})
    else:
        problems = [line.strip() for line in (row.message or "").splitlines() if line.strip()]
        out.update(status=row.status, problems=problems)
    return out


def _board_rows(board: Board, split: str, protocol: str, metric: str | None) -> list[dict[str, Any]]:
    from benchmark.store.ranking import board_json, leaderboard
    from benchmark.store.rules import rule_value

    def read(session):
        from sqlalchemy import select

        from benchmark.store.models import Split

        if session.scalar(select(Split.id).where(Split.name == split)) is None:
            raise HTTPException(404, f"split '{split}' is not on the board")
        return board_json(leaderboard(session, split, protocol=protocol, metric=metric,
                                      team_entry=rule_value(session, "team_entry"), public=True))

    return board.db.read(read, "reading the board")


def board_to_csv(rows: list[dict[str, Any]]) -> str:
    """One line per entry: identity, stamps, then each metric with its CI bounds."""
    metrics = sorted({m for r in rows for m in r["metrics"]})
    fixed = ["rank", "entry", "team", "model", "baseline", "flagged", "tasks", "protocol", "metric_version",
             "dataset_fingerprint", "submission_hash", "submitted_at", "n_scored", "n_missing", "stale"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(fixed + [f"{m}{part}" for m in metrics for part in ("", "_ci_low", "_ci_high")])
    for r in rows:
        line = [",".join(r[k]) if isinstance(r[k], list) else r[k] for k in fixed]
        for m in metrics:
            low, high = (r["ci95"].get(m) or [None, None])[:2]
            line += [r["metrics"].get(m), low, high]
        writer.writerow(["" if v is None else v for v in line])
    return out.getvalue()


def serve_api(settings: ServiceSettings, *, host: str, port: int) -> None:
    """Run the API with uvicorn in this process until stopped."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
