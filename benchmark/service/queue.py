"""The job queue: Celery, with one task — score submission N.

Why Celery: one code path over both deployments through kombu's transports — Redis at scale,
and its SQLAlchemy transport on a SQLite file for the embedded default (no server) — and the
delivery guarantees a scoring job needs: `acks_late` (a message is acknowledged only after the
job ran), `reject_on_worker_lost`, and on Redis the `visibility_timeout` after which a message
held by a worker that vanished (`kill -9`) is delivered again. Exactly-once does not come from
the engine but from the store: a job is keyed by its submission id; a worker first *claims* the
row with a compare-and-set UPDATE, and writes the scores in the transaction that marks the row
scored — so a re-delivered job that already completed does nothing, and a half-done one is
redone from the start. The store is the truth and the broker only delivers: a worker also sweeps
the store for abandoned or stranded rows and sends them again (the SQLite transport cannot
re-deliver a message of a killed worker on its own; a broker that lost its data neither).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from celery import Celery

if TYPE_CHECKING:
    from benchmark.store.board import Board

TASK = "mmtt.score_submission"
QUEUE = "mmtt-score"
SQLITE_BUSY_S = 10.0           # the SQLite broker: how long a send waits for its lock (per try)
DEFAULT_VISIBILITY_S = 300.0   # Redis: an unacknowledged message is delivered again after this ($MMTT_VISIBILITY_S)

app = Celery("mmtt")
log = logging.getLogger("mmtt.queue")


def configure(broker: str) -> Celery:
    """Point the app at `broker` (a process talks to one broker)."""
    visibility = float(os.environ.get("MMTT_VISIBILITY_S") or DEFAULT_VISIBILITY_S)
    app.conf.update(
        broker_url=broker,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,        # a worker holds at most the job it runs
        task_ignore_result=True,             # the status lives in the store
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a restarting broker is waited for
        broker_transport_options=_transport_options(broker, visibility),
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
    )
    return app


def _transport_options(broker: str, visibility: float) -> dict:
    """Redis: the redelivery delay. The SQLite broker: a send waits `SQLITE_BUSY_S` for the file's
    lock (per try), in WAL mode so that the workers' polling never blocks a send (the SQLAlchemy
    transport hands these options to create_engine)."""
    if broker.startswith("redis"):
        return {"visibility_timeout": visibility}
    if broker.startswith("sqla+sqlite:///"):
        _sqlite_wal(Path(broker[len("sqla+sqlite:///"):]))
        return {"connect_args": {"timeout": SQLITE_BUSY_S}}
    return {}


def _sqlite_wal(path: Path) -> None:
    """Put the broker file in WAL mode (a setting kept in the file; created if missing)."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=SQLITE_BUSY_S)
    try:
        con.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as exc:   # held by another process all along: it works in the old mode
        log.warning("broker %s: not switched to WAL (%s)", path, exc)
    finally:
        con.close()


def enqueue(submission_id: int) -> None:
    """Send the job for `submission_id` (safe to send twice: the claim makes the second a no-op)."""
    score_task.apply_async((int(submission_id),), retry=True)


def send(board: Board, submission_id: int) -> bool:
    """Send the job of a queued row; when the broker cannot take it, log why and mark the row so
    that the workers' next sweep sends it (False). Never raises for a broker fault."""
    from benchmark.store.submission import mark_unsent

    try:
        enqueue(submission_id)
        return True
    except Exception as exc:  # noqa: BLE001 - any broker fault: the store keeps the row queued
        log.warning("submission #%s: could not be sent to the queue (%s: %s); the next sweep sends it",
                    submission_id, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    try:
        mark_unsent(board, submission_id)
    except Exception as exc:  # noqa: BLE001 - the store is down too: the stuck-row rule still sends it
        log.warning("submission #%s: could not be marked for re-sending (%s)", submission_id, exc)
    return False


@app.task(name=TASK, bind=True, max_retries=None)
def score_task(self, submission_id: int) -> str:
    from benchmark.service.worker import Transient, run_job

    try:
        return run_job(int(submission_id))
    except Transient as exc:   # the store was unreachable: try again later, from the queue
        raise self.retry(exc=exc.__cause__ or exc, countdown=min(30, 2 ** min(self.request.retries, 5)))
