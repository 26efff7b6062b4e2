"""`mmtt demo` end to end on a small mini-MMTT: every stage runs, every runnable registered model
reaches the board on eval, test and test's robustness variants (the Robustness view filled), and
a second run reuses everything it can."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import baselines.catalog  # noqa: F401
from baselines import registry
from benchmark.data.synth.build import split_sizes


def _mmtt(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_demo_end_to_end_then_cached(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    args = ("demo", "--workdir", str(work), "--n", "100", "--no-serve", "--device", "cpu")
    first = _mmtt(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    for step in ("1/3", "2/3", "3/3"):
        assert f"== {step}" in out
    runnable = sorted(e.name for e in registry.entries() if e.needs != "checkpoint")
    not_run = sorted(e.name for e in registry.entries() if e.needs == "checkpoint")
    lines = out.splitlines()
    for name in not_run:  # said, never silently dropped
        assert any(ln.split()[:3] == [name, "not", "run:"] for ln in lines), name
    db = work / "board.sqlite"
    _, n_eval, n_test = split_sizes(100)
    for split, n in (("eval", n_eval), ("test", n_test)):
        board = _mmtt("leaderboard", "--db", str(db), "--split", split, "--json")
        assert board.returncode == 0, board.stderr
        rows = json.loads(board.stdout)
        assert sorted(r["entry"] for r in rows) == runnable
        assert all(r["baseline"] and r["n_missing"] == 0 and r["n_scored"] == n for r in rows)
    # the terminal table names every entry
    table = out[out.index("== 3/3"):]
    assert all(name in table for name in runnable)
    assert "forgerytalker-tiny" in table
    # the robustness view is filled: every entry ran and was submitted on the three test variants
    assert "rule: ranked by the mean relative drop" in table
    robust = _mmtt("leaderboard", "--db", str(db), "--split", "test", "--robust", "--json", "--n-boot", "200")
    assert robust.returncode == 0, robust.stderr
    doc = json.loads(robust.stdout)
    assert doc["variant_splits"] == {"blur": "test_blur", "both": "test_both", "downscale": "test_downscale"}
    assert sorted(r["entry"] for r in doc["rows"]) == runnable
    for row in doc["rows"]:
        assert row["status"] in ("ranked", "not ranked"), (row["entry"], row["status"], row["notes"])
        for variant in ("downscale", "blur", "both"):
            drops = row["variants"][variant]
            # every clean metric but METEOR, which the demo leaves out of the variant submissions
            assert drops != "not evaluated" and set(drops) == set(row["clean"]) - {"meteor"}, (row["entry"], variant)
    ranked = [r for r in doc["rows"] if r["status"] == "ranked"]
    assert [r["rank"] for r in ranked] == sorted(r["rank"] for r in ranked) and ranked[0]["rank"] == 1

    second = _mmtt(*args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    again = second.stdout
    assert "reusing" in again.split("== 2/3")[0]  # the data
    trained = [e.name for e in registry.entries() if e.needs == "training"]
    for name in trained:
        assert any(line.split()[:2] == [name, "reusing"] for line in again.splitlines()), name
    assert "to train (log" not in again
    assert again.count("unchanged") >= 2 * len(runnable)  # stored submissions are not scored again
    assert again.count("(unchanged x4") >= len(runnable)   # test and its 3 variants, one job per model
    rows2 = json.loads(_mmtt("leaderboard", "--db", str(db), "--split", "test", "--json").stdout)
    assert len(rows2) == len(runnable)
