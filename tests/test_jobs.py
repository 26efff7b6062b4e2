"""The demo's job runner: dependencies are waited for, slots are respected, a failure stops the
run with the failing verb's own message and leaves nothing running."""

import time
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.jobs import Job, run_jobs


def _job(tmp: Path, name: str, argv: list[str], after: tuple[str, ...] = (), done: list | None = None) -> Job:
    def record(job: Job, seconds: float) -> None:
        done.append((job.name, time.perf_counter(), job.output.read_text()))
    return Job(name, argv, tmp / f"{name}.log", after=after, on_done=record if done is not None else None)


def test_dependencies_run_first_and_outputs_are_kept_apart(tmp_path: Path) -> None:
    done: list = []
    jobs = [_job(tmp_path, "b", ["models", "--json"], after=("a",), done=done),
            _job(tmp_path, "a", ["models"], done=done),
            _job(tmp_path, "c", ["models", "--json"], done=done)]
    run_jobs(jobs, slots=2)
    order = [name for name, _, _ in done]
    assert sorted(order) == ["a", "b", "c"] and order.index("a") < order.index("b")
    outputs = {name: out for name, _, out in done}
    assert outputs["b"].lstrip().startswith("[") and "model" in outputs["a"]  # stdout only, no messages


def test_a_failing_job_stops_the_run_with_its_message(tmp_path: Path) -> None:
    jobs = [_job(tmp_path, "bad", ["run", "no-such-model", "--data", str(tmp_path), "--out", str(tmp_path / "o")]),
            _job(tmp_path, "later", ["models"], after=("bad",))]
    with pytest.raises(BenchmarkError) as err:
        run_jobs(jobs, slots=1)
    text = str(err.value)
    assert "`mmtt run no-such-model" in text and "exit 2" in text and "unknown model 'no-such-model'" in text
    assert jobs[1].proc is None  # its dependency failed: never started


def test_unknown_dependency_and_cycles_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown jobs"):
        run_jobs([_job(tmp_path, "a", ["models"], after=("nope",))], slots=1)
    with pytest.raises(BenchmarkError, match="wait for each other"):
        run_jobs([_job(tmp_path, "a", ["models"], after=("b",)), _job(tmp_path, "b", ["models"], after=("a",))],
                 slots=2)


def test_a_failure_stops_the_jobs_still_running(tmp_path: Path) -> None:
    slow = _job(tmp_path, "slow", ["data", "demo", "--out", str(tmp_path / "mini"), "--n", "5000"])
    bad = _job(tmp_path, "bad", ["run", "no-such-model", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    t0 = time.perf_counter()
    with pytest.raises(BenchmarkError, match="no-such-model"):
        run_jobs([slow, bad], slots=2)
    assert time.perf_counter() - t0 < 60   # the 5,000-item generation was stopped, not waited for
    assert slow.proc is not None and slow.proc.exitcode is not None and slow.proc.exitcode != 0


def _report_process_setup(output: str, log: str) -> None:
    from benchmark.jobs import enter_job

    enter_job(output, log, {"OMP_NUM_THREADS": "1", "MMTT_PROBE": "yes"})
    import multiprocessing
    import os

    import torch

    print(multiprocessing.get_start_method(), torch.get_num_threads(), os.environ.get("MMTT_PROBE"),
          os.getsid(0) == os.getpid(), flush=True)


def test_a_job_process_is_set_up_as_a_command_line_one(tmp_path: Path) -> None:
    """Forked from the server, a job still gets the platform's start method for the processes it
    starts (a DataLoader worker through a forkserver of its own costs seconds), its environment,
    thread count and session."""
    import multiprocessing

    from benchmark.jobs import _context

    out = tmp_path / "probe.out"
    proc = _context().Process(target=_report_process_setup, args=(str(out), str(tmp_path / "probe.log")))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0, (tmp_path / "probe.log").read_text()
    default = multiprocessing.get_context().get_start_method()
    assert out.read_text().split() == [default, "1", "yes", "True"]
