"""`mmtt board` (here as `python -m leaderboard_app`, the same handlers): settings reach the app,
a missing or outdated board is refused in one line, and the server starts, answers and stops
cleanly on Ctrl-C; the change marker makes new submissions visible."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from leaderboard_app import queries
from leaderboard_app.commands import add_parsers, free_port, main, streamlit_command
from leaderboard_app.config import load_config, to_argv
from tests.test_board_helpers import BoardWorld, board_world  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def test_settings_from_argv_then_environment() -> None:
    cfg = load_config(["--db", "sqlite:////x/b.sqlite", "--data", "/d", "--n-boot", "7", "--no-meteor"],
                      env={"MMTT_BOARD_DB": "sqlite:////y.sqlite", "MMTT_BOARD_MAX_UPLOAD_MB": "3"})
    assert (cfg.db, str(cfg.data), cfg.n_boot, cfg.meteor, cfg.max_upload_mb) == \
        ("sqlite:////x/b.sqlite", "/d", 7, False, 3.0)
    assert load_config(to_argv(cfg), env={}) == cfg
    env_cfg = load_config([], env={"MMTT_BOARD_DB": "/tmp/z.sqlite", "MMTT_BOARD_NO_METEOR": "1"})
    assert env_cfg.db == "sqlite:////tmp/z.sqlite" and env_cfg.data is None and not env_cfg.meteor
    assert load_config([], env={"MMTT_DB": "postgresql://u:p@h/db"}).db == "postgresql://u:p@h/db"
    cmd = streamlit_command(cfg, port=9999, address="127.0.0.1", cap_mb=2.5)
    assert cmd[cmd.index("--server.port") + 1] == "9999" and cmd[cmd.index("--server.maxUploadSize") + 1] == "3"
    assert cmd[cmd.index("--") + 1:] == to_argv(cfg)


def test_parser_registers_board_and_token_actions() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="mmtt")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["board", "--db", "x.sqlite", "--port", "0", "--data", "d"])
    assert args.func.__name__ == "cmd_board" and args.port == 0 and args.db == "x.sqlite"
    args = parser.parse_args(["board", "--db", "x.sqlite", "token", "add", "--team", "t"])
    assert args.func.__name__ == "cmd_token_add" and args.db == "x.sqlite"
    args = parser.parse_args(["board", "token", "revoke", "abcd1234", "--db", "y.sqlite"])
    assert args.func.__name__ == "cmd_token_revoke" and args.db == "y.sqlite"


def test_missing_or_outdated_board_is_refused(tmp_path, capsys) -> None:
    assert main(["--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no board database here" in capsys.readouterr().err
    (tmp_path / "empty.sqlite").write_bytes(b"")
    assert main(["--db", str(tmp_path / "empty.sqlite")]) == 2
    assert "mmtt db upgrade" in capsys.readouterr().err


def test_serves_then_stops_cleanly_on_ctrl_c(board_world: BoardWorld) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "leaderboard_app", "--db", board_world.url, "--port", str(port),
                             "--address", "127.0.0.1", "--data", str(board_world.data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "MMTT board at" in line or not line:
                break
        assert f"MMTT board at http://localhost:{port}" in "".join(lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
        raise AssertionError("the server is still answering after Ctrl-C")
    except OSError:
        pass


def test_change_marker_moves_with_the_board(board_world: BoardWorld, tmp_path) -> None:
    from benchmark.scoring.options import ScoreOptions
    from benchmark.store.submission import SubmitRequest, submit

    world = board_world.clone(tmp_path / "b")
    before = queries.change_marker(world.url)
    rows_before, _ = queries.board(world.url, "test")
    with queries.submit_board(world.url, None) as board:
        submit(board, SubmitRequest(path=world.submission("late", team="team-late", seed=21), data=world.data,
                                    name="late", options=ScoreOptions(skip=("meteor",), n_boot=20,
                                                                       cache_dir=world.root / "cache")))
    queries.invalidate()
    assert queries.change_marker(world.url) != before
    rows_after, _ = queries.board(world.url, "test")
    assert "late" in [r.entry for r in rows_after] and "late" not in [r.entry for r in rows_before]
