"""`mmtt board`: serve the web leaderboard; `mmtt board token add|list|revoke`: submission tokens.

`mmtt board --db URL [--port P] [--data DIR]` starts `streamlit run leaderboard_app/app.py`
with the settings after `--`, prints the address once the server answers, and stops it cleanly
on Ctrl-C. The server only reads the board (the Submit page writes through the store's submit,
after a valid token). Tokens are issued per team and kept hashed in the board's settings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from benchmark.errors import BenchmarkError

APP = Path(__file__).resolve().with_name("app.py")
READY_TIMEOUT_S = 90.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(address: str, port: int) -> bool:
    """Whether `port` can be bound on `address` (so the health check cannot reach another server)."""
    host = "127.0.0.1" if address in ("localhost", "") else address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server does: TIME_WAIT is fine
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = READY_TIMEOUT_S) -> bool:
    """Poll Streamlit's health endpoint until it answers `ok` (False on timeout or a dead server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def streamlit_command(config, *, port: int, address: str, cap_mb: float) -> list[str]:
    """The `streamlit run` command line for `config` (an `AppConfig`)."""
    from leaderboard_app.config import to_argv

    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.headless", "true", "--server.port", str(port), "--server.address", address,
            "--server.maxUploadSize", str(max(1, math.ceil(cap_mb))), "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer",
            "--client.showErrorDetails", "none",   # no traceback (with server paths) reaches the public
            "--", *to_argv(config)]


def _check_board(url: str) -> None:
    """The board must exist and be at the current schema (the server itself never migrates)."""
    from benchmark.store.db import sqlite_path
    from benchmark.store.migrate import current_revision, head_revision
    from leaderboard_app.readonly import readonly_database

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise BenchmarkError(f"{path}: no board database here (submit something first, or pass --db)")
    database = readonly_database(url)
    try:
        have = current_revision(database)
    except Exception as exc:  # noqa: BLE001 - reported in one line
        raise BenchmarkError(f"cannot read the board at {url}: {str(exc).splitlines()[0][:200]}") from None
    finally:
        database.dispose()
    if have != head_revision():
        raise BenchmarkError(f"the board's schema is {have or 'empty'}, this mmtt-bench needs {head_revision()}: "
                             f"run `mmtt db upgrade --db {url}` first")


def cmd_board(args: argparse.Namespace) -> int:
    from benchmark.store.db import resolve_url
    from leaderboard_app.config import AppConfig

    url = resolve_url(args.db)
    _check_board(url)
    if args.data and not Path(args.data).is_dir():
        raise BenchmarkError(f"{args.data}: data directory not found")
    config = AppConfig(db=url, data=Path(args.data).absolute() if args.data else None,
                       files=Path(args.files).absolute() if args.files else None,
                       max_upload_mb=args.max_upload_mb, n_boot=args.n_boot, api=args.api,
                       title=args.title)
    port = args.port or free_port(args.address if args.address not in ("0.0.0.0", "::") else "127.0.0.1")
    if not port_free(args.address, port):
        raise BenchmarkError(f"port {port} on {args.address} is in use (another board?); pass --port")
    cmd = streamlit_command(config, port=port, address=args.address, cap_mb=args.max_upload_mb)
    shown_host = "localhost" if args.address in ("127.0.0.1", "localhost", "0.0.0.0", "::") else args.address
    address = f"http://{shown_host}:{port}"
    proc = subprocess.Popen(cmd, start_new_session=True)   # our Ctrl-C handling stops it, in order
    previous = _interrupt_on_sigterm()
    try:
        local = f"http://127.0.0.1:{port}" if args.address in ("0.0.0.0", "::", "localhost") else address
        if wait_healthy(local, proc):
            print(f"MMTT board at {address}  (read-only on {_shown(url)}; Ctrl-C stops it)", flush=True)
        elif proc.poll() is not None:
            raise BenchmarkError(f"the board server exited with status {proc.returncode} before it was ready")
        else:
            print(f"MMTT board starting at {address} (not answering yet); Ctrl-C stops it", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping the board…", file=sys.stderr, flush=True)
        return 0
    finally:
        _stop(proc)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt_on_sigterm():
    """A SIGTERM to `mmtt board` stops the server too (as Ctrl-C does); returns the old handler."""
    def handler(signum, frame) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:   # not the main thread
        return None


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ----------------------------------------------------------------------------------- tokens
def _token_rows(session) -> list[Any]:
    from sqlalchemy import select

    from benchmark.store.models import Setting
    from benchmark.store.tokens import KEY_PREFIX, TokenRecord

    rows = session.scalars(select(Setting).where(Setting.key.startswith(KEY_PREFIX)).order_by(Setting.key))
    return [r for r in (TokenRecord.from_value(s.value) for s in rows) if r is not None]


def _open_board(args: argparse.Namespace):
    from benchmark.store.board import Board
    from benchmark.store.db import resolve_url, sqlite_path

    url = resolve_url(args.db)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise BenchmarkError(f"{path}: no board database here (submit something first, or pass --db)")
    return Board.open(url)


def cmd_token_add(args: argparse.Namespace) -> int:
    from benchmark.store.models import Setting
    from benchmark.store.tokens import new_token, setting_key

    team = (args.team or "").strip()
    if not team or len(team) > 200 or any(ord(c) < 32 for c in team):
        raise BenchmarkError("--team must be a non-empty name of at most 200 printable characters")

    def write(session) -> tuple[str, Any]:
        taken = {r.id for r in _token_rows(session)}
        token, record = new_token(team, args.note or "", taken)
        session.add(Setting(key=setting_key(record.id), value=record.to_value()))
        return token, record

    with _open_board(args) as board:
        token, record = board.db.write(write, "issuing a token")
    if args.json:
        print(json.dumps({"id": record.id, "team": record.team, "token": token, "note": record.note}))
    else:
        print(f"token {record.id} for team '{team}' (shown once; only its hash is kept):\n{token}")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    with _open_board(args) as board:
        records = board.db.read(_token_rows, "listing tokens")
    records = [r for r in records if args.all or r.active]
    if args.json:
        print(json.dumps([{"id": r.id, "team": r.team, "note": r.note, "created_at": r.created_at,
                           "revoked_at": r.revoked_at} for r in records], indent=2))
        return 0
    if not records:
        print("no tokens" + ("" if args.all else " (active; --all lists revoked ones too)"))
    for r in records:
        state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
        print(f"{r.id}  {r.team:<24} {r.created_at:<26} {state:<12} {r.note}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from datetime import datetime, timezone

    from benchmark.store.models import Setting
    from benchmark.store.tokens import TokenRecord, setting_key

    def write(session) -> str:
        row = session.get(Setting, setting_key(args.id))
        record = TokenRecord.from_value(row.value) if row is not None else None
        if record is None:
            raise BenchmarkError(f"no token with id '{args.id}' (see `mmtt board token list`)")
        if not record.active:
            return f"token {record.id} was already revoked ({record.revoked_at})"
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        row.value = replace(record, revoked_at=now).to_value()
        return f"token {record.id} of team '{record.team}' revoked"

    with _open_board(args) as board:
        print(board.db.write(write, "revoking a token"))
    return 0


# ---------------------------------------------------------------------------------- parsers
def _db(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    p.add_argument("--db", default=argparse.SUPPRESS if nested else None,
                   help="SQLAlchemy URL or SQLite file (default $MMTT_DB, else .mmtt/board.sqlite)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `mmtt board` (serve) and `mmtt board token add|list|revoke` on the `mmtt` parser."""
    p = sub.add_parser("board", help="serve the web leaderboard (Streamlit); `board token` manages upload tokens",
                       description=__doc__.splitlines()[0])
    _db(p)
    p.add_argument("--port", type=int, default=8501, help="port (default 8501; 0: any free port)")
    p.add_argument("--address", default="localhost",
                   help="interface to listen on (default localhost; 0.0.0.0 to publish it)")
    p.add_argument("--data", help="data root: enables the sample gallery")
    p.add_argument("--api", help="the submission API's URL (`mmtt serve`): enables the Submit page")
    p.add_argument("--files", help="folder of kept submission files (default: the store's rule)")
    p.add_argument("--max-upload-mb", type=float, default=512.0,
                   help="largest web upload in MiB (default 512; the board's max_upload_mb rule applies if lower)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for Compare")
    p.add_argument("--title", default="MMTT Leaderboard", help="the board's title")
    p.set_defaults(func=cmd_board)
    actions = p.add_subparsers(dest="board_command", metavar="ACTION")
    token = actions.add_parser("token", help="submission tokens for the Submit page (one team each, stored hashed)")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = token_sub.add_parser("add", help="issue a token for a team (printed once)")
    t.add_argument("--team", required=True, help="the team whose entries the token may submit")
    t.add_argument("--note", default="", help="who it was given to, why")
    t.add_argument("--json", action="store_true")
    _db(t, nested=True)
    t.set_defaults(func=cmd_token_add)
    t = token_sub.add_parser("list", help="issued tokens (ids, teams, state; never the tokens)")
    t.add_argument("--all", action="store_true", help="revoked ones too")
    t.add_argument("--json", action="store_true")
    _db(t, nested=True)
    t.set_defaults(func=cmd_token_list)
    t = token_sub.add_parser("revoke", help="revoke a token by its id")
    t.add_argument("id", help="the 8-hex-digit id (from `token list`)")
    _db(t, nested=True)
    t.set_defaults(func=cmd_token_revoke)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m leaderboard_app ...` = `mmtt board ...` (same handlers and exit codes)."""
    parser = argparse.ArgumentParser(prog="mmtt")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["board", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except BenchmarkError as err:
        print(f"error: {err.report()}", file=sys.stderr)
        return 2
