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
import subprocess
import sys
import time
from pathlib import Path

from benchmark.data.split import available_splits
from benchmark.errors import BenchmarkError
from benchmark.metrics import registry

SPLITS = ("eval", "test")
ROBUST_SPLIT = "test"   # its robustness variants (downscale, blur, both) are run and submitted too
# METEOR (a Java jar) is ~90% of a caption submission's scoring time: the demo leaves it out of the
# variant submissions to stay within its time budget (the clean board keeps it)
VARIANT_SKIP = "meteor"
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


def _slots(jobs: int | None) -> int:
    """Jobs at once: one per core by default (each job runs torch on one thread), at most 4."""
    if jobs is not None:
        if jobs < 1:
            raise BenchmarkError(f"--jobs {jobs}: must be at least 1")
        return jobs
    return max(1, min(4, os.cpu_count() or 1))


def run_demo(args: argparse.Namespace) -> int:
    import baselines.catalog  # noqa: F401  (declares every model)
    from baselines import registry
    from baselines.checkpoint import META
    from benchmark.jobs import Job, run_jobs

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts, logs = workdir / "checkpoints", workdir / "logs"
    os.environ["MMTT_CHECKPOINTS"] = str(ckpts)  # train and run agree on where
    # every job is one single-threaded process; as many run at once as there are cores
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    slots = _slots(args.jobs)
    db = workdir / "board.sqlite"
    entries = registry.entries()
    start = time.perf_counter()

    t0 = _step("1/5 the embedded mini-MMTT")
    data = ensure_data(workdir, args.n, args.seed, args.size)
    _done(t0)

    t0 = _step(f"2/5 training the models that learn from the train split ({slots} at a time)")
    trainable = [e for e in entries if e.needs == "training"]
    jobs: list[Job] = []
    cached = {e.name for e in trainable
              if (ckpts / e.name / META).is_file() or (ckpts / e.name / "config.json").is_file()}
    for e in sorted(trainable, key=lambda e: -TRAIN_COST.get(e.name, 0)):  # the longest first
        ckpt = ckpts / e.name
        if e.name in cached:
            print(f"   {e.name:<20} reusing {ckpt}")
            continue
        epochs = ["--epochs", str(DEMO_EPOCHS[e.name])] if e.name in DEMO_EPOCHS else []
        after = tuple(f"train {u}" for u in e.uses if u not in cached)
        jobs.append(Job(f"train {e.name}", ["train", e.name, "--data", str(data), "--out", str(ckpt),
                                            "--device", args.device, "--quiet", *epochs],
                        logs / f"train-{e.name}.log", after=after, on_done=_trained))
    if jobs:
        for j in jobs:
            print(f"   {j.name[6:]:<20} to train (log: {j.log})", flush=True)
        run_jobs(jobs, slots=slots, env=env)
    _done(t0)

    t0 = _step(f"3/5 running every model through the harness on eval, test and test's robustness variants "
               f"({slots} at a time)")
    from benchmark.data.robust import make_variants, missing_variants

    missing = missing_variants(data, ROBUST_SPLIT)
    if missing:   # made once here, not by each job's `run --robust` at the same time
        t1 = time.perf_counter()
        make_variants(data, ROBUST_SPLIT, missing)
        print(f"   wrote the {', '.join(missing)} variant(s) of {ROBUST_SPLIT} ({time.perf_counter() - t1:.1f} s)")
    for e in entries:
        if e.needs == "checkpoint":
            print(f"   {e.name:<20} not run: needs pretrained weights (`mmtt run {e.name} --checkpoint DIR`), "
                  "which cannot be downloaded here")
    runnable = [e for e in entries if e.needs != "checkpoint"]
    runs: list[tuple[str, str, Path]] = []
    jobs = []
    for e in sorted(runnable, key=lambda e: -RUN_COST.get(e.name, 0)):
        for split in SPLITS:   # test with --robust: runs/MODEL/test, then runs/MODEL/test_{downscale,blur,both}
            out = workdir / "runs" / e.name / split
            extra = ["--checkpoint", str(ckpts / e.name)] if e.needs == "training" else []
            extra += ["--robust"] if split == ROBUST_SPLIT else []
            jobs.append(Job(f"{e.name} {split}", ["run", e.name, "--data", str(data), "--split", split,
                                                  "--out", str(out), "--device", args.device, "--json",
                                                  "--quiet", *extra],
                            logs / f"run-{e.name}-{split}.log", on_done=_ran))
            runs.append((e.name, split, out))
    run_jobs(jobs, slots=slots, env=env)
    _done(t0)

    t0 = _step(f"4/5 submitting each run to the board {db}")
    for split in SPLITS:
        robust = ["--robust", "--quiet"] if split == ROBUST_SPLIT else []
        _cli("split", "add", "--data", str(data), "--split", split, "--db", str(db), "--update", *robust, capture=True)
    # test with --robust: the clean run, then each variant run linked to it (`mmtt submit --robust`)
    jobs = [Job(f"{name} {split}", ["submit", str(out), "--data", str(data), "--split", split, "--db", str(db),
                                    "--name", name, "--baseline", "--json",
                                    *(["--robust", "--skip-on-variants", VARIANT_SKIP] if split == ROBUST_SPLIT
                                      else [])],
                logs / f"submit-{name}-{split}.log", on_done=_submitted)
            for name, split, out in sorted(runs, key=lambda r: -RUN_COST.get(r[0], 0))]
    run_jobs(jobs, slots=slots, env=env)
    _done(t0)

    _step("5/5 the leaderboard (test split) and its robustness table")
    _cli("leaderboard", "--db", str(db), "--split", "test")
    print()
    _cli("leaderboard", "--db", str(db), "--split", ROBUST_SPLIT, "--robust", "--metrics", "iou,cider")
    print(f"\nmini-MMTT demo done in {time.perf_counter() - start:.0f} s. The numbers are from the embedded "
          "data and small models, not MMTT.")
    api = f"http://127.0.0.1:{args.port + 1}"
    if args.no_serve:
        print(f"serve the submission API and the board with:  mmtt serve --db {db} --data {data} "
              f"--port {args.port + 1} &  mmtt board --db {db} --data {data} --api {api}")
        return 0
    # the Submit page posts through the submission API (embedded queue, one local worker)
    server = subprocess.Popen([sys.executable, "-m", "benchmark", "serve", "--db", str(db), "--data", str(data),
                               "--port", str(args.port + 1)])
    print(f"serving the submission API on {api} and the board (Ctrl-C to stop) ...", flush=True)
    try:
        _cli("board", "--db", str(db), "--data", str(data), "--port", str(args.port), "--api", api)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return 0


# rough seconds on one core at the default size: the scheduler starts the long jobs first
TRAIN_COST = {"forgerytalker-tiny": 280, "unet": 200, "segformer": 170, "retrieval": 90}
RUN_COST = {"retrieval": 20, "segformer": 12, "blur-inconsistency": 10, "noise-residual": 9,
            "forgerytalker-tiny": 8, "template": 8, "unet": 8, "ela": 6}


def _json_output(job) -> dict:
    """The JSON object the verb printed (with --json) as its whole standard output."""
    return json.loads(job.output.read_text(encoding="utf-8"))


def _trained(job, seconds: float) -> None:
    last = [ln for ln in job.output.read_text(encoding="utf-8").splitlines() if ln.startswith("trained")]
    detail = "  " + last[-1].split("(", 1)[-1].rstrip(")") if last else ""
    print(f"   {job.name[6:]:<20} trained in {seconds:.1f} s{detail}", flush=True)


def _ran(job, seconds: float) -> None:
    out = _json_output(job)
    logs = list(out["logs"].values()) if "logs" in out else [out]   # `run --robust`: one log per split
    if all(log.get("already_complete") for log in logs):
        how = "reusing the finished run" + ("s" if len(logs) > 1 else "")
    else:
        how = (f"{sum(log.get('computed_items', 0) for log in logs)} images"
               + (f" over {len(logs)} splits (clean + robustness variants)" if len(logs) > 1
                  else f", {logs[0].get('images_per_s') or 0:.1f}/s"))
    name, split = job.name.rsplit(" ", 1)
    print(f"   {name:<20} {split:<14} {seconds:6.1f} s  {how}", flush=True)


def _submitted(job, seconds: float) -> None:
    results = _json_output(job)
    results = results if isinstance(results, list) else [results]   # `submit --robust`: clean, then variants
    metrics = results[0].get("metrics", {})
    shown = "  ".join(f"{k} {metrics[k]:.3f}" for k in registry.primary().values() if metrics.get(k) is not None)
    if len(results) > 1:
        shown += f"  (+ {len(results) - 1} robustness variants)"
    unchanged = sum(1 for r in results if r.get("duplicate"))
    if unchanged:
        shown += "  (unchanged" + (f" x{unchanged}" if unchanged > 1 else "") + ": these files are already scored)"
    name, split = job.name.rsplit(" ", 1)
    print(f"   {name:<20} {split:<14} {seconds:6.1f} s  {shown}", flush=True)
