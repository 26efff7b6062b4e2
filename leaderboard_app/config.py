"""Where the web board finds its database, data and kept files — from argv or the environment.

`streamlit run leaderboard_app/app.py -- --db URL --data DIR` passes settings after `--`
(Streamlit hands them to the script as `sys.argv`); `mmtt board` passes them the same way.
Tests and containers can use environment variables instead (`MMTT_BOARD_DB`, ...). The command
line wins over the environment, which wins over the defaults (`$MMTT_DB`, else the store's
default SQLite file).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
DEFAULT_MAX_UPLOAD_MB = 512.0


@dataclass(frozen=True)
class AppConfig:
    db: str                      # SQLAlchemy URL (a path is turned into a SQLite URL)
    data: Path | None            # data root: the sample gallery's truth; None = no gallery
    files: Path | None           # kept submission files (None: the store's rule)
    max_upload_mb: float         # upload cap of the Submit page (the board's own rule may be lower)
    n_boot: int                  # bootstrap replicates for comparisons
    api: str | None              # the submission API the Submit page posts to; None = submissions closed
    title: str


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leaderboard_app", add_help=False)
    p.add_argument("--db")
    p.add_argument("--data")
    p.add_argument("--files")
    p.add_argument("--max-upload-mb", type=float)
    p.add_argument("--n-boot", type=int)
    p.add_argument("--api")
    p.add_argument("--title")
    return p


def _script_argv() -> list[str]:
    """The arguments after `--` when this app is the script being run (not pytest's argv)."""
    if not sys.argv:
        return []
    try:
        script = Path(sys.argv[0]).resolve()
    except (OSError, ValueError):
        return []
    return sys.argv[1:] if APP_DIR in script.parents or script.parent == APP_DIR else []


def load_config(argv: list[str] | None = None, env: dict[str, str] | None = None) -> AppConfig:
    """The app's settings: argv (after `--`), then `MMTT_BOARD_*` variables, then defaults."""
    from benchmark.store.db import resolve_url

    env = dict(os.environ if env is None else env)
    args, _ = _parser().parse_known_args(_script_argv() if argv is None else argv)

    def pick(flag, name: str) -> str | None:
        return flag if flag not in (None, "") else (env.get(name) or None)

    db = pick(args.db, "MMTT_BOARD_DB") or env.get("MMTT_DB") or None
    data = pick(args.data, "MMTT_BOARD_DATA")
    files = pick(args.files, "MMTT_BOARD_FILES")
    cap = args.max_upload_mb if args.max_upload_mb is not None else float(
        env.get("MMTT_BOARD_MAX_UPLOAD_MB") or DEFAULT_MAX_UPLOAD_MB)
    n_boot = args.n_boot if args.n_boot is not None else int(env.get("MMTT_BOARD_N_BOOT") or 1000)
    api = pick(args.api, "MMTT_BOARD_API")
    return AppConfig(db=resolve_url(db), data=Path(data).expanduser().absolute() if data else None,
                     files=Path(files).expanduser().absolute() if files else None,
                     max_upload_mb=cap, n_boot=n_boot, api=api.rstrip("/") if api else None,
                     title=pick(args.title, "MMTT_BOARD_TITLE") or "MMTT Leaderboard")


def to_argv(config: AppConfig) -> list[str]:
    """The script arguments that reproduce `config` (what `mmtt board` passes after `--`)."""
    out = ["--db", config.db, "--max-upload-mb", f"{config.max_upload_mb:g}", "--n-boot", str(config.n_boot)]
    if config.data:
        out += ["--data", str(config.data)]
    if config.files:
        out += ["--files", str(config.files)]
    if config.api:
        out += ["--api", config.api]
    if config.title != "MMTT Leaderboard":
        out += ["--title", config.title]
    return out
