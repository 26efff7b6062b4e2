"""Run `mmtt` verbs as parallel subprocesses that wait for the jobs they depend on.

The demo's stages are many small single-threaded jobs (a 1-thread training, a harness run, a
scoring pass with its Java tokenizer): on a 2-core machine running them one after another leaves a
core idle most of the time. Each job's standard output and messages go to files of its own; a
failing job stops the run (the others are terminated) and the last lines of its messages are
shown, so the located error a verb prints is never lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
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
    proc: subprocess.Popen | None = field(default=None, repr=False)
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
                with open(j.output, "wb") as out, open(j.log, "wb") as err:
                    j.proc = subprocess.Popen([sys.executable, "-m", "benchmark", *j.argv], stdout=out, stderr=err,
                                              stdin=subprocess.DEVNULL, env=env, start_new_session=True)
                j.started = time.perf_counter()
                running.append(j)
            if not running:
                raise BenchmarkError(f"jobs {[j.name for j in pending]} wait for each other")
            finished = [j for j in running if j.proc is not None and j.proc.poll() is not None]
            for j in finished:
                running.remove(j)
                seconds = time.perf_counter() - j.started
                if j.proc.returncode != 0:
                    raise BenchmarkError(f"`mmtt {' '.join(j.argv)}` failed (exit {j.proc.returncode}) after "
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
        for j in jobs:  # a failure or Ctrl-C: stop whatever still runs
            if j.proc is not None and j.proc.poll() is None:
                try:
                    os.killpg(j.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    j.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(j.proc.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return "   (no log)"
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join(f"   | {ln}" for ln in kept)
