"""`mmtt demo`: the main job on the embedded mini-MMTT, end to end, cached between runs.

Generate the mini-MMTT -> train the models that need it -> run every runnable registered model
on eval and test through the harness -> submit each to a SQLite board -> print the leaderboard
-> serve it. Part of the CLI layer (it wires data, models, scoring, store and board together by
calling the same verbs a user would). Every stage reuses what an earlier run left: the data (same
n/seed/size), checkpoints, finished harness runs (resume), and stored submissions (identical files
are not scored twice).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmark.data.split import available_splits
from benchmark.errors import BenchmarkError

SPLITS = ("eval", "test")
# shorter training than the models' defaults, to keep the demo within minutes on 2 CPU cores
DEMO_EPOCHS = {"segformer": 2}


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def ensure_data(workdir: Path, n: int, seed: int, size: int) -> Path:
    """Generate the mini-MMTT unless the same one (n, seed, size) is already there."""
    from benchmark.data.synth import generate

    data = workdir / "data"
    stamp = data / ".mmtt-demo.json"
    want = {"n": n, "seed": seed, "size": size}
    if stamp.is_file() and json.loads(stamp.read_text()) == want and \
            {"train", "eval", "test"} <= set(available_splits(data)):
        print(f"   reusing {data} (n={n}, seed={seed}, {size}px)")
        return data
    generate(data, n=n, seed=seed, size=size, progress=True)
    stamp.write_text(json.dumps(want))
    return data


def _cli(*argv: str, capture: bool = False) -> str:
    """Run an `mmtt` verb in this process (its stdout returned instead of printed when `capture`);
    a failure stops the demo with the verb's own located message above."""
    import contextlib
    import io

    from benchmark.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if capture else contextlib.nullcontext():
        code = main(list(argv))
    if code:
        raise BenchmarkError(f"`mmtt {' '.join(argv)}` failed (exit {code}); see the message above")
    return buffer.getvalue()


def run_demo(args: argparse.Namespace) -> int:
    import baselines.catalog  # noqa: F401  (declares every model)
    from baselines import registry
    from baselines.checkpoint import META

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MMTT_CHECKPOINTS"] = str(workdir / "checkpoints")  # train and run agree on where
    db = workdir / "board.sqlite"
    quiet = ["--quiet"] if not args.verbose else []
    entries = registry.entries()
    start = time.perf_counter()

    t0 = _step("1/5 the embedded mini-MMTT")
    data = ensure_data(workdir, args.n, args.seed, args.size)
    _done(t0)

    t0 = _step("2/5 training the models that learn from the train split")
    # localizers first: a template captioner builds on a trained localizer
    trainable = sorted((e for e in entries if e.needs == "training"), key=lambda e: e.kind != "localizer")
    for e in trainable:
        ckpt = workdir / "checkpoints" / e.name
        if (ckpt / META).is_file() or (ckpt / "config.json").is_file():
            print(f"   {e.name:<20} reusing {ckpt}")
            continue
        print(f"   {e.name:<20} training ...", flush=True)
        t = time.perf_counter()
        epochs = ["--epochs", str(DEMO_EPOCHS[e.name])] if e.name in DEMO_EPOCHS else []
        _cli("train", e.name, "--data", str(data), "--out", str(ckpt), "--device", args.device, *epochs, *quiet)
        print(f"   {e.name:<20} trained in {time.perf_counter() - t:.1f} s", flush=True)
    _done(t0)

    t0 = _step("3/5 running every model through the harness on eval and test")
    runnable = [e for e in entries if e.needs != "checkpoint"]
    for e in entries:
        if e.needs == "checkpoint":
            print(f"   {e.name:<20} not run: needs pretrained weights (`mmtt run {e.name} --checkpoint DIR`), "
                  "which cannot be downloaded here")
    runs: list[tuple[str, str, Path]] = []
    for e in runnable:
        for split in SPLITS:
            out = workdir / "runs" / e.name / split
            t = time.perf_counter()
            extra = ["--checkpoint", str(workdir / "checkpoints" / e.name)] if e.needs == "training" else []
            _cli("run", e.name, "--data", str(data), "--split", split, "--out", str(out),
                 "--device", args.device, *extra, *quiet)
            print(f"   {e.name:<20} {split:<5} {time.perf_counter() - t:6.1f} s", flush=True)
            runs.append((e.name, split, out))
    _done(t0)

    t0 = _step(f"4/5 submitting each run to the board {db}")
    for split in SPLITS:
        _cli("split", "add", "--data", str(data), "--split", split, "--db", str(db), "--update", capture=True)
    for name, split, out in runs:
        t = time.perf_counter()
        result = json.loads(_cli("submit", str(out), "--data", str(data), "--split", split, "--db", str(db),
                                 "--name", name, "--baseline", "--json", capture=True))
        metrics = result.get("metrics") or result.get("summary", {}).get("metrics", {})
        shown = "  ".join(f"{k} {metrics[k]:.3f}" for k in ("iou", "cider") if metrics.get(k) is not None)
        print(f"   {name:<20} {split:<5} {time.perf_counter() - t:6.1f} s  {shown}", flush=True)
    _done(t0)

    _step("5/5 the leaderboard (test split)")
    _cli("leaderboard", "--db", str(db), "--split", "test")
    print(f"\nmini-MMTT demo done in {time.perf_counter() - start:.0f} s. The numbers are from the embedded "
          "data and small models, not MMTT.")
    if args.no_serve:
        print(f"serve the board with:  mmtt board --db {db} --data {data}")
        return 0
    print("serving the board (Ctrl-C to stop) ...", flush=True)
    _cli("board", "--db", str(db), "--data", str(data), "--port", str(args.port))
    return 0
