"""`mmtt demo`: the main job on the embedded mini-MMTT, end to end, cached between runs.

Part of the CLI layer (it wires data, models, scoring, store and board together).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmark.data.split import available_splits, load_split


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def ensure_data(workdir: Path, n: int, seed: int, size: int) -> Path:
    """Generate the mini-MMTT unless the same one (n, seed, size) is already there."""
    from benchmark.data.synth import generate

    data = workdir / "data"
    stamp = data / ".mmtt-demo.json"
    want = {"n": n, "seed": seed, "size": size}
    if stamp.is_file() and json.loads(stamp.read_text()) == want and \
            {"train", "eval", "test"} <= set(available_splits(data)):
        print(f"reusing {data} (n={n}, seed={seed}, {size}px)")
        return data
    generate(data, n=n, seed=seed, size=size, progress=True)
    stamp.write_text(json.dumps(want))
    return data


def run_demo(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = _step("1/2 the embedded mini-MMTT")
    data = ensure_data(workdir, args.n, args.seed, args.size)
    print(f"   {time.perf_counter() - t0:.1f} s")
    _step("2/2 checking it as the benchmark reads it")
    for name in ("train", "eval", "test"):
        split = load_split(data, name)
        print(f"   {name:<6}{len(split):>6} items  methods {split.counts('method')}")
        print(f"   {'':<6}{'':>6}        fingerprint {split.fingerprint}")
    print(f"\ndata ready at {data}; score a submission with:\n"
          f"   mmtt score SUBMISSION --data {data} --split test")
    return 0
