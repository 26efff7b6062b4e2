"""Run `mmtt` verbs as parallel processes that wait for the jobs they depend on.

The demo's stages are many small single-threaded jobs (a 1-thread training, a harness run, a
scoring pass with its Java tokenizer): on a 2-core machine running them one after another leaves a
core idle most of the time. Each job's standard output and messages go to files of its own; a
failing job stops the run (the others are terminated) and the last lines of its messages are
shown, so the located error a verb prints is never lost.

Each job is a fresh process forked from a server that imported torch, transformers and the CLI
once (multiprocessing's forkserver): starting Python and importing them took ~3-4 s per job,
a tenth of the demo. Each job runs in a session of its own, with the job's environment and
thread count.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmark.errors import BenchmarkError


@dataclass
class Job:
    """One `mmtt` invocation: `argv` after `mmtt`, started once every job in `after` succeeded."""

    name: str
    argv: list[str]
    log: Path
    after: tuple[str, ...] = ()
    on_done: Callable[["Job", float], None] | None = None  # reports the result (reads `output`)
    kind: str = ""                                            # what the caller tallies it under
    proc: multiprocessing.process.BaseProcess | None = field(default=None, repr=False)
    started: float = 0.0

    @property
    def output(self) -> Path:
        """Where the verb's standard output goes (its messages and progress go to `log`)."""
        return self.log.with_suffix(".out")


def run_jobs(jobs: list[Job], *, slots: int, env: dict[str, str] | None = None, heartbeat: float = 30.0,
             say: Callable[[str], None] = print, on_done: Callable[[Job, float], None] | None = None) -> None:
    """Run `jobs` at most `slots` at a time, in list order among those whose dependencies are done.
    Every `heartbeat` seconds without news, say which jobs are running and for how long.
    `on_done(job, seconds)` follows each job's own `on_done`."""
    names = {j.name for j in jobs}
    for j in jobs:
        missing = [a for a in j.after if a not in names]
        if missing:
            raise ValueError(f"job {j.name!r} waits for unknown jobs {missing}")
    pending: list[Job] = list(jobs)
    running: list[Job] = []
    done: set[str] = set()
    last_news = time.perf_counter()
    try:
        while pending or running:
            ready = [j for j in pending if set(j.after) <= done]
            for j in ready[:max(0, slots - len(running))]:
                pending.remove(j)
                j.log.parent.mkdir(parents=True, exist_ok=True)
                proc = _context().Process(target=_job_main, args=(j.argv, str(j.output), str(j.log),
                                                                  dict(os.environ if env is None else env)),
                                          name=f"mmtt {j.name}")
                proc.start()
                j.proc, j.started = proc, time.perf_counter()
                running.append(j)
            if not running:
                raise BenchmarkError(f"jobs {[j.name for j in pending]} wait for each other")
            finished = [j for j in running if j.proc is not None and j.proc.exitcode is not None]
            for j in finished:
                running.remove(j)
                seconds = time.perf_counter() - j.started
                if j.proc.exitcode != 0:
                    raise BenchmarkError(f"`mmtt {' '.join(j.argv)}` failed (exit {j.proc.exitcode}) after "
                                         f"{seconds:.0f} s; its log {j.log} ends with:\n{_tail(j.log)}")
                done.add(j.name)
                for report in (j.on_done, on_done):
                    if report:
                        report(j, seconds)
                last_news = time.perf_counter()
            if running and time.perf_counter() - last_news >= heartbeat:
                now = time.perf_counter()
                say("   ... running: " + ", ".join(f"{j.name} ({now - j.started:.0f} s)" for j in running))
                last_news = now
            if not finished:
                time.sleep(0.2)
    finally:
        for j in jobs:  # a failure or Ctrl-C: stop whatever still runs (the job and what it started)
            if j.proc is not None and j.proc.exitcode is None:
                _kill_group(j.proc.pid, signal.SIGTERM)
                j.proc.join(timeout=10)
                if j.proc.exitcode is None:
                    _kill_group(j.proc.pid, signal.SIGKILL)
                    j.proc.join()


# imported once by the server every job is forked from: what `mmtt train`, `run` and `submit`
# import that takes seconds (torch and scikit-learn ~2.4 s each here)
PRELOAD = ["torch", "transformers", "sklearn.feature_extraction.text", "benchmark.cli", "benchmark.harness.run",
           "benchmark.scoring.score", "benchmark.store.submission", "baselines.catalog"]


def _context():
    """The forkserver (POSIX, as the sessions and process-group kills here already are)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _job_main(argv: list[str], output: str, log: str, env: dict[str, str]) -> None:
    """A job's process: set up as a command-line `mmtt` would be (`enter_job`), then the verb."""
    enter_job(output, log, env)
    from benchmark.cli import main

    try:
        code = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


def enter_job(output: str, log: str, env: dict[str, str]) -> None:
    """Make a process forked from the server what a command-line `mmtt` is: its own session (so
    that stopping it stops what it started), the job's environment and thread count, the
    platform's start method for the processes it starts, stdin from /dev/null, stdout and stderr
    to the job's files."""
    os.setsid()
    # the server passed on its own start method: every DataLoader worker or process pool of the
    # verb would otherwise go through a new forkserver (~2.5 s each to start, instead of ~0.1 s)
    multiprocessing.set_start_method(None, force=True)
    os.environ.clear()
    os.environ.update(env)
    threads = env.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():   # the server imported torch and BLAS before it knew the job
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(int(threads))
        threadpool_limits(int(threads))
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)


def _kill_group(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return "   (no log)"
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join(f"   | {ln}" for ln in kept)
