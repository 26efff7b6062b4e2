"""Sharded runs: torchrun with 2 CPU processes (gloo) writes exactly what one process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from tests.conftest import make_random_dataset
from tests.test_harness import REPO, tree_bytes


def _run(args: list[str], launcher: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)


def test_torchrun_two_ranks_equals_single_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_random_dataset(data, n=11, size=32, seed=5)  # 11 items, batches of 2: an odd tail, no padding
    common = ["noise-residual", "--data", str(data), "--split", "test", "--device", "cpu", "--batch-size", "2",
              "--workers", "0", "--option", "image_size=32", "--quiet"]
    single = _run(["run", *common, "--out", str(tmp_path / "single")], [sys.executable, "-m", "benchmark"])
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "benchmark"]
    sharded = _run(["run", *common, "--out", str(tmp_path / "sharded")], torchrun)
    assert sharded.returncode == 0, sharded.stderr
    log = json.loads((tmp_path / "sharded" / "run.json").read_text())
    assert log["world_size"] == 2 and log["computed_items"] == 11 and log["n_predicted"] == 11
    lines = (tmp_path / "sharded" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(x)["image_id"] for x in lines}) == 11  # no duplicate, none lost
    assert tree_bytes(tmp_path / "sharded") == tree_bytes(tmp_path / "single")


def test_nproc_relaunches_under_torchrun_and_resumes_a_single_process_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_random_dataset(data, n=9, size=32, seed=6)
    common = ["noise-residual", "--data", str(data), "--split", "test", "--device", "cpu", "--batch-size", "2",
              "--workers", "0", "--option", "image_size=32", "--quiet"]
    mmtt = [sys.executable, "-m", "benchmark"]
    assert _run(["run", *common, "--out", str(tmp_path / "single")], mmtt).returncode == 0
    out = str(tmp_path / "mixed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMTT_HARNESS_KILL_AFTER": "2"}
    killed = subprocess.run([*mmtt, "run", *common, "--out", out], cwd=REPO, env=env, capture_output=True)
    assert killed.returncode != 0  # stopped after two batches by one process ...
    done = _run(["run", *common, "--out", out, "--nproc", "2"], mmtt)  # ... finished by two
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "mixed" / "run.json").read_text())["resumed_items"] == 4
    assert tree_bytes(tmp_path / "mixed") == tree_bytes(tmp_path / "single")
