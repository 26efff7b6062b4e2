"""A scoring worker: one process, one job at a time, caches kept warm between jobs.

`mmtt worker` (and each local worker of `mmtt serve`) opens the board once, then runs Celery's
worker loop (solo pool: the job runs in this very process, so the truth caches, tokenizers and
METEOR it loads stay warm for the next one; scale out by starting more processes, on any
machine). A job: claim the row (atomic), score it from the kept files with the heartbeat
renewing its lease, store the scores in the transaction that marks it scored. A user's mistake
marks the row failed with every problem; a store fault hands the row back and retries later.
A sweeper thread re-sends rows whose worker was lost (see `queue`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from benchmark.errors import BenchmarkError
from benchmark.scoring.options import ScoreOptions
from benchmark.service.settings import ServiceSettings
from benchmark.store.board import Board
from benchmark.store.errors import StoreError

log = logging.getLogger("mmtt.worker")
DEFAULT_REQUEUE_AFTER_S = 600.0   # a queued row untouched this long is sent again ($MMTT_REQUEUE_AFTER_S)


class Transient(Exception):
    """The store could not be reached or was busy: the job is retried from the queue."""


@dataclass
class _Runtime:
    board: Board
    data: Path
    local: ScoreOptions


_runtime: _Runtime | None = None


def open_runtime(settings: ServiceSettings) -> _Runtime:
    """Open the board once for this process (jobs reuse it)."""
    global _runtime
    if settings.data is None:
        raise BenchmarkError("a worker needs --data (the truth it scores against)")
    board = Board.open(settings.db, settings.files)
    _runtime = _Runtime(board=board, data=settings.data, local=settings.score)
    return _runtime


def run_job(submission_id: int) -> str:
    """Score submission `submission_id` unless it is done or held by a live worker; returns what happened."""
    from benchmark.store.submission import claim, release, score_claimed

    if _runtime is None:
        raise RuntimeError("the worker runtime is not open (start workers with `mmtt worker`)")
    board = _runtime.board
    try:
        request = claim(board, submission_id)
    except (SQLAlchemyError, StoreError) as exc:
        raise Transient(f"claiming #{submission_id}") from exc
    if request is None:
        log.info("submission #%s: nothing to do (done, or held by a live worker)", submission_id)
        return "skipped"
    local = _runtime.local   # this machine's options; the method options are the submission's own
    request = replace(request, data=_runtime.data,
                      options=request.options.with_(cache_dir=local.cache_dir, workers=local.workers, progress=False))
    try:
        outcome = score_claimed(board, submission_id, request)
    except BenchmarkError as exc:
        if isinstance(exc, StoreError) and "busy" in str(exc):
            _release_quietly(release, board, submission_id)
            raise Transient(str(exc)) from exc
        log.warning("submission #%s failed: %s", submission_id, exc)
        return "failed"
    except SQLAlchemyError as exc:
        _release_quietly(release, board, submission_id)
        raise Transient(f"storing #{submission_id}") from exc
    log.warning("submission #%s scored (entry %s)", submission_id, outcome.entry)
    return "scored"


def _release_quietly(release, board: Board, submission_id: int) -> None:
    try:
        release(board, submission_id)
    except Exception:  # noqa: BLE001 - the lease runs out anyway; the retry then takes it over
        pass


def sweep_forever(stop: threading.Event, every_s: float) -> None:
    """Re-send abandoned or stranded rows every `every_s` seconds (a daemon thread per worker)."""
    from benchmark.service.queue import send
    from benchmark.store.submission import requeue_abandoned

    stuck_after = float(os.environ.get("MMTT_REQUEUE_AFTER_S") or DEFAULT_REQUEUE_AFTER_S)
    while not stop.wait(every_s):
        if _runtime is None:
            continue
        try:
            for submission_id in requeue_abandoned(_runtime.board, stuck_after_s=stuck_after):
                if send(_runtime.board, submission_id):
                    log.warning("submission #%s re-queued", submission_id)
        except Exception as exc:  # noqa: BLE001 - the store is down: next round
            log.warning("sweep failed: %s", exc)


def _stop_when_orphaned(parent: int, stop: threading.Event, every_s: float = 1.0) -> None:
    """SIGTERM this worker (Celery's warm shutdown: the current job is finished) once `parent` is
    no longer its parent: it has ended (even before this worker got here), which re-parents it."""
    while True:
        if os.getppid() != parent:
            log.warning("the process that started this worker has ended: stopping")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if stop.wait(every_s):
            return


def run_worker(settings: ServiceSettings, *, loglevel: str = "WARNING", parent: int | None = None) -> int:
    """Run one worker process until it is stopped (SIGTERM / Ctrl-C finish the current job first).
    `parent`: the pid of the process that started it; stop so once it is gone (`mmtt serve`'s
    workers: a serve killed outright must not leave them scoring)."""
    from benchmark.service.queue import QUEUE, configure
    from benchmark.store.submission import lease_s

    logging.basicConfig(level=getattr(logging, loglevel, logging.WARNING), format="%(asctime)s %(name)s %(message)s")
    open_runtime(settings)
    app = configure(settings.broker)
    stop = threading.Event()
    sweeper = threading.Thread(target=sweep_forever, args=(stop, max(1.0, lease_s() / 2)), name="sweeper",
                               daemon=True)
    sweeper.start()
    if parent is not None:
        threading.Thread(target=_stop_when_orphaned, args=(parent, stop), name="parent-watch",
                         daemon=True).start()
    try:
        app.worker_main(["worker", "--pool=solo", "--concurrency=1", f"--loglevel={loglevel}", "-Q", QUEUE,
                         "-n", f"mmtt-{os.getpid()}@{socket.gethostname()}",
                         "--without-gossip", "--without-mingle", "--without-heartbeat"])
    finally:
        stop.set()
        if _runtime is not None:
            _runtime.board.close()
    return 0
