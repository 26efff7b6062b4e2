"""Real processes: eight `mmtt submit` at once on a fresh board, and SIGKILL in the middle of
`submit` and `rescore` — no lock error reaches anyone, no row is lost, no half entry is left,
and running the command again finishes the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.store.models import Entry, Evaluation, Score, Submission
from tests.test_store_helpers import World, cli, rows, snapshot, world  # noqa: F401

FAST_FLAGS = ("--no-meteor", "--n-boot", "20")


def _submit_cmd(world: World, path: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark", "submit", str(path), "--data", str(world.data), "--db", world.db,
            "--name", name, *FAST_FLAGS, *extra]


def _run_all(cmds: list[list[str]], env: dict | None = None) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **(env or {})}) for c in cmds]
    outs = []
    for c, p in zip(cmds, procs):
        out, err = p.communicate(timeout=300)
        outs.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return outs


def test_eight_concurrent_submits_on_a_fresh_board(world: World) -> None:
    """All eight migrate/submit at once: every one succeeds, every row is there."""
    paths = [world.submission(f"m{i}", team=f"team{i}", seed=i) for i in range(8)]
    outs = _run_all([_submit_cmd(world, p, f"m{i}", "--json") for i, p in enumerate(paths)])
    for out in outs:
        assert out.returncode == 0, out.stderr
        assert "locked" not in out.stderr.lower() and "busy" not in out.stderr.lower()
    ids = {json.loads(o.stdout)["submission_id"] for o in outs}
    assert len(ids) == 8
    with world.board() as board:
        subs = rows(board, Submission)
        assert sorted(s.entry_name for s in subs) == [f"m{i}" for i in range(8)]
        assert {s.status for s in subs} == {"scored"}
        assert len(rows(board, Entry)) == 8
        current = rows(board, Evaluation, Evaluation.current.is_(True))
        assert len(current) == 8
        n_metrics = len(json.loads(outs[0].stdout)["metrics"])
        assert len(rows(board, Score)) == 8 * n_metrics
    board_rows = json.loads(cli("leaderboard", "--db", world.db, "--json").stdout)
    assert sorted(r["entry"] for r in board_rows) == [f"m{i}" for i in range(8)]


@pytest.mark.slow
def test_concurrent_submits_cannot_beat_the_daily_limit(world: World) -> None:
    paths = [world.submission(f"q{i}", team="greedy", seed=i) for i in range(6)]
    outs = _run_all([_submit_cmd(world, p, f"q{i}", "--daily-limit", "3") for i, p in enumerate(paths)])
    assert sorted(o.returncode for o in outs) == [0, 0, 0, 2, 2, 2]
    for o in outs:
        assert "locked" not in o.stderr.lower()
        if o.returncode:
            assert "used its 3 submission" in o.stderr
    with world.board() as board:
        assert sorted(s.status for s in rows(board, Submission)) == ["failed"] * 3 + ["scored"] * 3


def _kill_at(cmd: list[str], step: str, mark: Path) -> None:
    """Start `cmd` paused at `step`, wait until it gets there, SIGKILL it."""
    env = {**os.environ, "MMTT_STORE_PAUSE_AT": step, "MMTT_STORE_PAUSE_FILE": str(mark),
           "MMTT_STORE_PAUSE_SECONDS": "120"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not mark.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited before step {step}: {proc.communicate()[1].decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never reached step {step}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("step", ["commit", pytest.param("scored", marks=pytest.mark.slow)])
def test_sigkill_mid_submit_leaves_no_half_entry_and_rerun_completes(world: World, tmp_path: Path, step: str) -> None:
    """`commit`: killed inside the final transaction with every row written but not committed;
    `scored`: killed between scoring and storing."""
    first = world.submission("first", team="early", seed=5)
    assert cli(*_submit_cmd(world, first, "first")[3:]).returncode == 0
    with world.board() as board:
        before = snapshot(board)
    sub = world.submission("victim", team="t", seed=6)
    cmd = _submit_cmd(world, sub, "victim")
    _kill_at(cmd, step, tmp_path / "paused")
    with world.board() as board:
        after = snapshot(board)
        for table in before:
            if table != "submissions":
                assert after[table] == before[table], f"{table} changed by a killed submit"
        left = rows(board, Submission, Submission.entry_name == "victim")
        assert len(left) == 1 and left[0].status in ("received", "scoring") and left[0].entry_id is None
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    with world.board() as board:
        (row,) = rows(board, Submission, Submission.entry_name == "victim")   # the same row, taken over
        assert row.id == left[0].id and row.status == "scored" and row.entry_id is not None
        assert [e.name for e in rows(board, Entry)] == ["first", "victim"]
        assert len(rows(board, Evaluation, Evaluation.current.is_(True))) == 2


def test_sigkill_mid_rescore_keeps_old_scores_and_rerun_completes(world: World, tmp_path: Path) -> None:
    for i, name in enumerate(("r1", "r2")):
        assert cli(*_submit_cmd(world, world.submission(name, team=name, seed=i), name)[3:]).returncode == 0
    # the truth is corrected: every stored score is now out of date
    records = json.loads((world.data / "test-mutilabel.json").read_text())
    records[0]["caption"] = "The nose is smeared, and the left eye is asymmetric."
    (world.data / "test-mutilabel.json").write_text(json.dumps(records))
    with world.board() as board:
        before = snapshot(board)
        old = {e.entry_id: e.dataset_fingerprint for e in rows(board, Evaluation, Evaluation.current.is_(True))}
    cmd = [sys.executable, "-m", "benchmark", "rescore", "--db", world.db, "--data", str(world.data), "--update"]
    _kill_at(cmd, "rescore-commit:2", tmp_path / "paused")   # r1 done, killed inside r2's transaction
    with world.board() as board:
        current = {e.entry_id: e for e in rows(board, Evaluation, Evaluation.current.is_(True))}
        assert len(current) == 2
        fresh = [e for e in current.values() if e.dataset_fingerprint != old[e.entry_id]]
        assert len(fresh) == 1                                 # the first entry's re-score is kept whole
        assert len(rows(board, Evaluation)) == len(before["evaluations"]) + 1
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "1 updated, 1 unchanged" in out.stdout
    with world.board() as board:
        current = rows(board, Evaluation, Evaluation.current.is_(True))
        assert len(current) == 2 and all(e.dataset_fingerprint != old[e.entry_id] for e in current)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "0 updated, 2 unchanged" in again.stdout
