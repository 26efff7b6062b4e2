"""A database handle that cannot write — what the web board reads the store through.

Two locks, so one failing is not enough: a SQLite file is opened with `?mode=ro` (SQLite itself
refuses any write), and every engine refuses, before it reaches the driver, any statement that
is not a read (this also covers other databases; PostgreSQL sessions are set read-only too).
The `Database` keeps the board's own URL, so the store finds the kept-files folder as usual.
No Streamlit here: `mmtt board` uses it to check the board before starting the server.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from benchmark.store.db import Database, make_engine, sqlite_path
from benchmark.store.errors import StoreError

READ_STATEMENTS = re.compile(r"^\s*(SELECT|WITH|PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SHOW|SET\s+"
                             r"(SESSION\s+CHARACTERISTICS|TRANSACTION))\b", re.IGNORECASE)
_PRAGMA_WRITE = re.compile(r"^\s*PRAGMA\s+\w+\s*=", re.IGNORECASE)


class ReadOnlyError(StoreError):
    """Something tried to write through the web board's read-only engine."""


class BoardUnavailable(StoreError):
    """The board database cannot be read (missing file, no schema yet, server down)."""


def _guard(engine: Engine) -> Engine:
    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        text = statement.lstrip()
        # the SQLite begin hook and pool resets pass; `PRAGMA x = y` (a setting) does not
        if not READ_STATEMENTS.match(text) or _PRAGMA_WRITE.match(text):
            word = (text.split(None, 1) or ["empty"])[0].upper()
            raise ReadOnlyError(f"the web board is read-only: refused a {word} statement")

    event.listen(engine, "before_cursor_execute", before)
    return engine


def readonly_engine(url: str) -> Engine:
    """An engine that cannot write (see the module doc)."""
    u = make_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not path.is_file():
            raise BoardUnavailable(f"{path}: no board database here (submit something first, or pass --db)")
        return _guard(make_engine(f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"))
    if u.get_backend_name() == "sqlite":
        return _guard(make_engine(url))
    options = {"postgresql_readonly": True} if u.get_backend_name() == "postgresql" else {}
    return _guard(create_engine(u, pool_pre_ping=True, execution_options=options))


def readonly_database(url: str) -> Database:
    return Database(url=url, engine=readonly_engine(url))
