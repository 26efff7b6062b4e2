"""The board: its database (brought to the current schema) and the folder of kept submission files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError

from benchmark.store.db import Database, sqlite_path
from benchmark.store.filestore import FileStore
from benchmark.store.models import Setting

FILES_SETTING = "files_root"


@dataclass
class Board:
    db: Database
    files: FileStore

    @classmethod
    def open(cls, db: str | None = None, files: str | Path | None = None, *, upgrade: bool = True) -> "Board":
        """Open (and by default upgrade) the board at `db`; see `files_root` for where files go."""
        from benchmark.store.migrate import ensure_current

        database = Database.open(db)
        if upgrade:
            ensure_current(database)
        return cls(db=database, files=FileStore(files_root(database, files, record=upgrade)))

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def files_root(database: Database, override: str | Path | None = None, *, record: bool = False) -> Path:
    """Where submission files are kept: the flag, `$MMTT_FILES`, the board's `files_root`
    setting, else beside a SQLite file (`board.sqlite` -> `board.files/`). For other databases
    the fallback `.mmtt/files` is recorded in the board, so later commands find it from anywhere."""
    if override:
        return Path(override).expanduser().absolute()
    env = os.environ.get("MMTT_FILES")
    if env:
        return Path(env).expanduser().absolute()
    stored = _stored(database)
    if stored is not None:
        return Path(stored)
    path = sqlite_path(database.url)
    if path is not None:
        return path.with_name(path.stem + ".files")
    root = Path(".mmtt/files").absolute()
    if record:
        def save(session) -> None:
            if session.get(Setting, FILES_SETTING) is None:
                session.add(Setting(key=FILES_SETTING, value=str(root)))

        database.write(save, "recording the files folder")
        return Path(_stored(database) or root)
    return root


def _stored(database: Database) -> str | None:
    def read(session) -> str | None:
        row = session.get(Setting, FILES_SETTING)
        return None if row is None else row.value

    try:
        return database.read(read)
    except (OperationalError, ProgrammingError):   # no schema yet (a read-only opener)
        return None
