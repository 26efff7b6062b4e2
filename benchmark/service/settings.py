"""The service's settings: store, data, kept files, broker and scoring defaults — one object.

Embedded default: a SQLite board and a SQLite broker file beside it (`board.sqlite` ->
`board.broker.sqlite`, Celery's SQLAlchemy transport): nothing to install or start. At scale:
`--db postgresql://...` and `--broker redis://...`; every process (API, workers on any machine)
is given the same three URLs and the same kept-files folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.scoring.options import ScoreOptions


@dataclass(frozen=True)
class ServiceSettings:
    db: str                                   # SQLAlchemy URL of the board
    data: Path | None                         # data root (truth): needed by workers, checked by the API
    broker: str                               # Celery broker URL
    files: Path | None = None                 # kept files (None: the store's rule)
    score: ScoreOptions = field(default_factory=ScoreOptions)   # method options stamped on API submissions
    max_upload_mb: float | None = None        # None: the board's rule

    @property
    def embedded(self) -> bool:
        return self.broker.startswith("sqla+sqlite")


def default_broker(db_url: str, broker: str | None) -> str:
    """`broker` if given; for a SQLite board, a SQLite broker file beside it; else an error."""
    from benchmark.store.db import sqlite_path

    if broker:
        return broker
    path = sqlite_path(db_url)
    if path is None:
        raise BenchmarkError("--broker is required with a non-SQLite --db (e.g. --broker redis://HOST:6379/0)")
    return f"sqla+sqlite:///{path.with_name(path.stem + '.broker.sqlite')}"


def settings_from_args(args, *, need_data: bool) -> ServiceSettings:
    """The settings from `mmtt serve` / `mmtt worker` arguments (checked: data root exists)."""
    from benchmark.store.db import resolve_url

    url = resolve_url(args.db)
    data = Path(args.data).expanduser().absolute() if getattr(args, "data", None) else None
    if data is not None and not data.is_dir():
        raise BenchmarkError(f"{data}: data directory not found")
    if need_data and data is None:
        raise BenchmarkError("--data is required: workers score against the truth under it")
    return ServiceSettings(db=url, data=data, broker=default_broker(url, getattr(args, "broker", None)),
                           files=Path(args.files).expanduser().absolute() if getattr(args, "files", None) else None,
                           score=ScoreOptions.from_args(args),
                           max_upload_mb=getattr(args, "max_upload_mb", None))
