"""Alembic environment for the board database.

`mmtt` passes its own connection (already inside a write transaction: `BEGIN IMMEDIATE` on
SQLite, an advisory lock on PostgreSQL), so concurrent processes apply a migration once.
The `alembic` command works too: `-x db=URL` (or `sqlalchemy.url`, or `$MMTT_DB`).
"""

from __future__ import annotations

from alembic import context

from benchmark.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True,   # SQLite cannot ALTER most things: copy-and-move
                      compare_type=True)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from benchmark.store.db import Database

    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url") or None
    database = Database.open(url)
    try:
        with database.engine.connect() as conn:
            conn.execution_options(mmtt_write=True)
            with conn.begin():
                _configure(conn)
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        database.dispose()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
