"""Schema and migrations: an empty or older board upgrades; the models match the migrations;
SQLite runs in WAL mode with immediate write transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from benchmark.store import migrate
from benchmark.store.db import Database, StoreError, resolve_url
from benchmark.store.models import Base, Team
from tests.test_store_helpers import TABLES, mmtt


def _db(tmp_path: Path) -> Database:
    return Database.open(str(tmp_path / "b.sqlite"))


def _diff(database: Database) -> list:
    def read(session):
        ctx = MigrationContext.configure(session.connection(), opts={"compare_type": True,
                                                                     "compare_server_default": True})
        return compare_metadata(ctx, Base.metadata)

    return database.read(read)


def test_upgrade_empty_database_and_models_match_migrations(tmp_path: Path) -> None:
    database = _db(tmp_path)
    assert migrate.current_revision(database) is None
    assert migrate.ensure_current(database) == migrate.head_revision()
    assert migrate.current_revision(database) == migrate.head_revision()
    names = set(inspect(database.engine).get_table_names())
    assert set(TABLES) <= names
    assert _diff(database) == []   # `alembic check`: nothing to autogenerate


def test_every_revision_upgrades_and_downgrades(tmp_path: Path) -> None:
    """Step through the history one revision at a time (a board at any older revision upgrades),
    then back down to empty and up again."""
    database = _db(tmp_path)
    for rev in migrate.revisions():
        migrate.upgrade(database, rev)
        assert migrate.current_revision(database) == rev
    migrate.downgrade(database, "base")
    assert migrate.current_revision(database) is None
    assert not set(TABLES) & set(inspect(database.engine).get_table_names())
    migrate.upgrade(database)
    assert _diff(database) == []


def test_upgrade_keeps_data_and_is_idempotent(tmp_path: Path) -> None:
    database = _db(tmp_path)
    migrate.ensure_current(database)
    database.write(lambda s: s.add(Team(name="kept")))
    migrate.upgrade(database)
    migrate.ensure_current(database)
    assert database.read(lambda s: list(s.scalars(select(Team.name)))) == ["kept"]


def test_board_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    database = _db(tmp_path)
    migrate.ensure_current(database)
    database.write(lambda s: s.connection().exec_driver_sql("UPDATE alembic_version SET version_num = 'zz99'"))
    with pytest.raises(StoreError, match="newer"):
        migrate.ensure_current(database)


def test_sqlite_is_wal_and_writes_take_the_lock_first(tmp_path: Path) -> None:
    database = _db(tmp_path)
    migrate.ensure_current(database)
    path = tmp_path / "b.sqlite"
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with database.session(write=True):
        # the write transaction holds the write lock before it has written anything
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        assert other.execute("SELECT count(*) FROM teams").fetchone() == (0,)   # readers are not blocked
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


def test_db_upgrade_cli_and_alembic_ini(tmp_path: Path) -> None:
    db = tmp_path / "cli.sqlite"
    out = mmtt("db", "upgrade", "--db", db)
    assert out.returncode == 0, out.stderr
    assert f"-> {migrate.head_revision()}" in out.stdout
    # the packaged alembic.ini drives the alembic command too
    from alembic.config import main as alembic_main

    db2 = tmp_path / "alembic.sqlite"
    alembic_main(["-c", str(migrate.MIGRATIONS / "alembic.ini"), "-x", f"db={resolve_url(str(db2))}",
                  "upgrade", "head"])
    assert migrate.current_revision(Database.open(str(db2))) == migrate.head_revision()


def test_default_url_is_a_local_sqlite_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MMTT_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_url(None) == f"sqlite:///{tmp_path / '.mmtt' / 'board.sqlite'}"
    assert resolve_url("postgresql://u@h/db") == "postgresql://u@h/db"
    monkeypatch.setenv("MMTT_DB", "x.sqlite")
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'x.sqlite'}"
