"""Schema migrations (Alembic, shipped inside the package) so an existing board survives upgrades.

Every command that opens the board brings it to the newest revision first (`ensure_current`);
`mmtt db upgrade` does it explicitly. The upgrade runs inside one write transaction (SQLite's
DDL is transactional when SQLAlchemy issues BEGIN), so several processes starting together on a
fresh file apply it exactly once, and a process killed half-way leaves the old schema intact.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from benchmark.store.db import Database, StoreError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def revisions() -> list[str]:
    """All revisions, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def current_revision(database: Database) -> str | None:
    def read(session) -> str | None:
        return MigrationContext.configure(session.connection()).get_current_revision()

    return database.read(read, "reading the schema revision")


def _run(database: Database, action: str, revision: str) -> None:
    def attempt(session) -> None:
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(734001)")   # one migrator at a time
        cfg = alembic_config(conn)
        getattr(command, action)(cfg, revision)

    database.write(attempt, f"schema {action}")


def upgrade(database: Database, revision: str = "head") -> None:
    """Apply migrations up to `revision` (a no-op when already there)."""
    _run(database, "upgrade", revision)


def downgrade(database: Database, revision: str) -> None:
    _run(database, "downgrade", revision)


def ensure_current(database: Database) -> str:
    """Upgrade the board if it is behind; refuse a board written by a newer mmtt-bench."""
    have, head = current_revision(database), head_revision()
    if have == head:
        return head
    if have is not None and have not in revisions():
        raise StoreError(f"{database.url}: schema revision {have} is newer than this mmtt-bench knows "
                         f"(head {head}); upgrade mmtt-bench")
    upgrade(database)
    return head
