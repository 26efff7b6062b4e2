"""`mmtt demo`: the main job on the embedded mini-MMTT, end to end, cached between runs.

Generate the mini-MMTT and its test variants -> train the models that need it -> run every
runnable registered model on eval and test (with its variants) through the harness -> submit each
run to a SQLite board -> print the leaderboard -> serve it. Training, runs and submissions are one
graph of jobs, so a job starts as soon as what it needs is done. Part of the CLI layer (it wires data, models, scoring, store and board together by
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
# METEOR (a Java jar that loads its paraphrase tables for ~15 s per scoring) is most of a caption
# submission's scoring time: to stay within its time budget the demo computes it for the clean
# test board only; the eval board and the variant submissions leave it out
METEOR = "meteor"
# shorter training than the models' defaults, to keep the demo within its time budget on 2 CPU
# cores (forgerytalker-tiny: 10 joint epochs, the explanation picked among the last 2 on eval)
DEMO_TRAINING = {"segformer": ["--epochs", "1"], "unet": ["--epochs", "3"],
                 "forgerytalker-tiny": ["--epochs", "10", "--option", "select_last=2"]}


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
    from benchmark.jobs import run_jobs

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MMTT_CHECKPOINTS"] = str(workdir / "checkpoints")  # train and run agree on where
    # every job is one single-threaded process; as many run at once as there are cores
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    slots = _slots(args.jobs)
    db = workdir / "board.sqlite"
    start = time.perf_counter()

    t0 = _step("1/3 the embedded mini-MMTT")
    data = ensure_data(workdir, args.n, args.seed, args.size)
    _done(t0)

    entries = registry.entries()
    for e in entries:
        if e.needs == "checkpoint":
            print(f"   {e.name:<20} not run: needs pretrained weights (`mmtt run {e.name} --checkpoint DIR`), "
                  "which cannot be downloaded here")
    jobs = _jobs(workdir, data, db, [e for e in entries if e.needs != "checkpoint"], args.device)
    t0 = _step(f"2/3 {ROBUST_SPLIT}'s robustness variants, the board's splits, then training, running (eval, test "
               f"and its variants) and submitting every model: {len(jobs)} jobs, {slots} at a time, each starting "
               "once what it needs is done")
    busy: dict[str, float] = {}
    run_jobs(jobs, slots=slots, env=env, on_done=lambda job, seconds: busy.update(
        {job.kind: busy.get(job.kind, 0.0) + seconds}))
    print("   job time: " + ", ".join(f"{kind} {busy[kind]:.0f} s" for kind in JOB_KINDS if kind in busy))
    _done(t0)

    _step("3/3 the leaderboard (test split) and its robustness table")
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


JOB_KINDS = ("data", "train", "run", "submit")


def _jobs(workdir: Path, data: Path, db: Path, runnable: list, device: str) -> list:
    """Every model's jobs as one graph: train (after the models it uses) -> run on eval and on
    test with its variants -> submit each run. Listed longest first, which is the order a free
    slot takes the jobs that are ready; no stage waits for another stage's slowest job."""
    from baselines.checkpoint import META
    from benchmark.data.robust import missing_variants
    from benchmark.jobs import Job

    ckpts, logs = workdir / "checkpoints", workdir / "logs"
    prep: list[Job] = []   # the variants (made once, not by each `run --robust`), the board's splits
    variants = missing_variants(data, ROBUST_SPLIT)
    if variants:
        prep.append(Job("data variants", ["data", "robust", "--data", str(data), "--split", ROBUST_SPLIT,
                                          *(a for v in variants for a in ("--variant", v)), "--workers", "1",
                                          "--quiet", "--json"],
                        logs / "data-variants.log", on_done=_prepared, kind="data"))
    made = tuple(j.name for j in prep)
    for split in SPLITS:
        robust = ["--robust", "--quiet"] if split == ROBUST_SPLIT else []
        prep.append(Job(f"data split-{split}", ["split", "add", "--data", str(data), "--split", split, "--db", str(db),
                                                "--update", *robust], logs / f"data-split-{split}.log",
                        after=made if split == ROBUST_SPLIT else (), on_done=_prepared, kind="data"))
    learners = [e for e in runnable if e.needs == "training"]
    trained = {e.name for e in learners
               if (ckpts / e.name / META).is_file() or (ckpts / e.name / "config.json").is_file()}
    train: list[Job] = []

    def chain(e) -> float:   # its training and the longest chain of trainings waiting for it
        return TRAIN_COST.get(e.name, 0) + max((chain(d) for d in learners if e.name in d.uses), default=0)

    for e in sorted(learners, key=lambda e: -chain(e)):
        if e.name in trained:
            print(f"   {e.name:<20} reusing {ckpts / e.name}")
            continue
        epochs = DEMO_TRAINING.get(e.name, [])
        print(f"   {e.name:<20} to train (log: {logs / f'train-{e.name}.log'})")
        train.append(Job(f"train {e.name}", ["train", e.name, "--data", str(data), "--out", str(ckpts / e.name),
                                             "--device", device, "--quiet", *epochs],
                         logs / f"train-{e.name}.log", after=tuple(f"train {u}" for u in e.uses if u not in trained),
                         on_done=_trained, kind="train"))
    waits = {j.name for j in train}
    run: list[Job] = []
    submit: list[Job] = []
    for e in sorted(runnable, key=lambda e: -RUN_COST.get(e.name, 0)):
        for split in SPLITS:   # test with --robust: runs/MODEL/test, then runs/MODEL/test_{downscale,blur,both}
            out = workdir / "runs" / e.name / split
            extra = ["--checkpoint", str(ckpts / e.name)] if e.needs == "training" else []
            robust = split == ROBUST_SPLIT
            run.append(Job(f"run {e.name} {split}", ["run", e.name, "--data", str(data), "--split", split,
                                                 "--out", str(out), "--device", device, "--json", "--quiet", *extra,
                                                 *(["--robust"] if robust else [])],
                           logs / f"run-{e.name}-{split}.log",
                           after=tuple({f"train {e.name}"} & waits) + (made if robust else ()),
                           on_done=_ran, kind="run"))
            skip = ["--robust", "--skip-on-variants", METEOR] if robust else ["--skip", METEOR]
            submit.append(Job(f"submit {e.name} {split}", ["submit", str(out), "--data", str(data), "--split", split,
                                                           "--db", str(db), "--name", e.name, "--baseline", "--json",
                                                           *skip],
                              logs / f"submit-{e.name}-{split}.log",
                              after=(f"run {e.name} {split}", f"data split-{split}"),
                              on_done=_submitted, kind="submit"))
    return prep + train + run + submit


# rough seconds at the default size on a 2-core machine, two jobs at a time (test with its
# variants for a run): the scheduler starts the long jobs first
TRAIN_COST = {"forgerytalker-tiny": 370, "unet": 210, "segformer": 150, "retrieval": 50}
RUN_COST = {"retrieval": 80, "forgerytalker-tiny": 80, "segformer": 65, "noise-residual": 50, "template": 45,
            "ela": 45, "blur-inconsistency": 45, "unet": 40}


def _json_output(job) -> dict:
    """The JSON object the verb printed (with --json) as its whole standard output."""
    return json.loads(job.output.read_text(encoding="utf-8"))


def _say(job, seconds: float, what: str) -> None:
    """One line per finished job: verb, model, split, seconds, what it gave."""
    kind, name, split = (job.name.split(" ") + [""])[:3]
    print(f"   {kind:<7}{name:<20} {split:<5} {seconds:6.1f} s  {what}", flush=True)


def _prepared(job, seconds: float) -> None:
    _say(job, seconds, "done")


def _trained(job, seconds: float) -> None:
    last = [ln for ln in job.output.read_text(encoding="utf-8").splitlines() if ln.startswith("trained")]
    _say(job, seconds, last[-1].split("(", 1)[-1].rstrip(")") if last else "")


def _ran(job, seconds: float) -> None:
    out = _json_output(job)
    logs = list(out["logs"].values()) if "logs" in out else [out]   # `run --robust`: one log per split
    if all(log.get("already_complete") for log in logs):
        how = "reusing the finished run" + ("s" if len(logs) > 1 else "")
    else:
        how = (f"{sum(log.get('computed_items', 0) for log in logs)} images"
               + (f" over {len(logs)} splits (clean + robustness variants)" if len(logs) > 1
                  else f", {logs[0].get('images_per_s') or 0:.1f}/s"))
    _say(job, seconds, how)


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
    _say(job, seconds, shown)
