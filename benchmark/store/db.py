"""Engine, transactions and retries: the one place that knows how to talk to the database safely.

SQLite (the default) needs care to be safe with several writer processes:
- WAL journal: readers never block the writer and the writer never blocks readers;
- every write transaction starts with `BEGIN IMMEDIATE`, so it takes the write lock before it
  reads anything. A deferred transaction that reads then writes can neither be serialized nor
  waited for (SQLite answers "database is locked" at once); an immediate one simply queues;
- a busy timeout, and on top of it a retry of the whole transaction with backoff, so a lock
  conflict is never shown to the user while the deadline (`MMTT_DB_TIMEOUT`, 600 s) lasts;
- foreign keys on; `synchronous=NORMAL` (durable across a killed process in WAL mode).
Any other SQLAlchemy URL works too (PostgreSQL: plain transactions, same retry on serialization
conflicts). Write functions given to `Board.write` must be safe to run again from the start.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from benchmark.store.errors import StoreError

T = TypeVar("T")

DEFAULT_DB = ".mmtt/board.sqlite"
BUSY_TIMEOUT_S = 30.0
_WRITE = "mmtt_write"


def resolve_url(db: str | None = None) -> str:
    """`db` as a SQLAlchemy URL: a URL as it is; a path (or nothing: `$MMTT_DB`, else
    `.mmtt/board.sqlite`) as a SQLite file URL."""
    db = db or os.environ.get("MMTT_DB") or DEFAULT_DB
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().absolute()}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory ones)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" \
            or u.database.startswith("file:"):
        return None
    return Path(u.database)


def _deadline_s() -> float:
    return float(os.environ.get("MMTT_DB_TIMEOUT", "600"))


def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    # SQLAlchemy emits BEGIN itself (see _sqlite_on_begin); the driver must not.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if connection_record is not None and connection_record.info.get("mmtt_file", True):
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
    finally:
        cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for `url`; for SQLite files, WAL + explicit BEGIN handling (parent folder created)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(u, pool_pre_ping=True)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_S})

    def on_connect(dbapi_connection, connection_record) -> None:
        connection_record.info["mmtt_file"] = path is not None
        _with_retry(lambda: _sqlite_on_connect(dbapi_connection, connection_record), "connect")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _retryable(exc: BaseException) -> bool:
    """Lock conflicts (SQLite busy/locked, PostgreSQL serialization/deadlock) and unique races."""
    if isinstance(exc, IntegrityError):
        return True          # two writers created the same team/entry at once (not on SQLite)
    if isinstance(exc, DBAPIError):
        text = str(getattr(exc, "orig", exc)).lower()
        code = getattr(getattr(exc, "orig", None), "pgcode", None)
        return "locked" in text or "busy" in text or code in ("40001", "40P01")
    name = type(exc).__name__
    return name == "OperationalError" and any(w in str(exc).lower() for w in ("locked", "busy"))


def _with_retry(fn: Callable[[], T], what: str, *, integrity_attempts: int = 3) -> T:
    deadline = time.monotonic() + _deadline_s()
    delay, integrity_left = 0.05, integrity_attempts
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered below
            if not _retryable(exc):
                raise
            if isinstance(exc, IntegrityError):
                integrity_left -= 1
                if integrity_left <= 0:
                    raise
            if time.monotonic() + delay > deadline:
                raise StoreError(f"database busy for more than {_deadline_s():.0f} s during {what}; "
                                 "try again (or raise MMTT_DB_TIMEOUT)") from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


@dataclass
class Database:
    """An engine plus safe read and write transactions."""

    url: str
    engine: Engine

    @classmethod
    def open(cls, db: str | None = None) -> "Database":
        url = resolve_url(db)
        return cls(url=url, engine=make_engine(url))

    @contextmanager
    def session(self, *, write: bool) -> Iterator[Session]:
        """A session in one transaction (immediate for writes), committed on success."""
        with self.engine.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE: True})
            with Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
                with session.begin():
                    session.connection()   # BEGIN (IMMEDIATE) now, not at the first statement
                    yield session

    def write(self, fn: Callable[[Session], T], what: str = "a write") -> T:
        """Run `fn` in one write transaction; lock conflicts re-run it from the start."""
        def attempt() -> T:
            with self.session(write=True) as s:
                return fn(s)

        return _with_retry(attempt, what)

    def read(self, fn: Callable[[Session], T], what: str = "a read") -> T:
        """Run `fn` in one read transaction (a consistent snapshot)."""
        def attempt() -> T:
            with self.session(write=False) as s:
                return fn(s)

        return _with_retry(attempt, what)

    def dispose(self) -> None:
        self.engine.dispose()
