"""Throughput of the submission service: submissions scored per minute with 1, 2, ... workers.

For each worker count W: a fresh board, `mmtt serve --workers W` (the API and W local worker
processes; embedded SQLite board and broker unless --db/--broker are given), W warm-up
submissions (so every worker has loaded what it keeps warm), then N distinct submissions of the
mini-MMTT test split posted at once; timed from the first post until the last is scored. Also
reports the per-job cost (W x elapsed / N) and the public board's read latency meanwhile.

    python scripts/bench_service.py [--n 20] [--workers 1 2] [--items 400] [--workdir .mmtt/bench-service]
                                    [--score-args "--skip meteor --n-boot 200"] [--db URL --broker URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mmtt(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], check=True, capture_output=True, text=True,
                          cwd=REPO).stdout


def make_archives(data: Path, out: Path, count: int) -> list[Path]:
    """`count` distinct submissions of the test split (random blob masks and keyword captions)."""
    from tests.conftest import write_submission

    records = json.loads((data / "test-mutilabel.json").read_text())
    archives = []
    for k in range(count):
        folder = write_submission(out / f"s{k}", records, seed=1000 + k, pred_size=64,
                                  manifest={"model": f"bench-{k}", "team": "bench", "authors": "Bench"})
        archive = out / f"s{k}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=path.relative_to(folder).as_posix())
        shutil.rmtree(folder)
        archives.append(archive)
    return archives


def wait_done(url: str, token: str, ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    with httpx.Client(base_url=url, timeout=60) as client:
        while pending:
            for sid in list(pending):
                state = client.get(f"/api/submissions/{sid}", headers={"Authorization": f"Bearer {token}"}).json()
                if state["status"] in ("scored", "failed"):
                    if state["status"] == "failed":
                        raise SystemExit(f"submission #{sid} failed: {state.get('problems')}")
                    pending.discard(sid)
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(pending)} submission(s) not scored after {timeout:.0f} s")
            time.sleep(0.5)


def run(workers: int, args, data: Path, archives: list[Path], root: Path) -> dict:
    from benchmark.service.client import submit_archive

    board = root / f"w{workers}"
    shutil.rmtree(board, ignore_errors=True)
    board.mkdir(parents=True)
    db = args.db or str(board / "board.sqlite")
    mmtt("split", "add", "--db", db, "--data", str(data), "--split", "test")
    token = json.loads(mmtt("board", "token", "add", "--team", "bench", "--db", db, "--json"))["token"]
    mmtt("db", "set", "daily_limit", "0", "--db", db)
    port = free_port()
    cmd = [sys.executable, "-m", "benchmark", "serve", "--db", db, "--data", str(data), "--port", str(port),
           "--workers", str(workers), *shlex.split(args.score_args)]
    if args.broker:
        cmd += ["--broker", args.broker]
    log = open(board / "serve.log", "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the service did not start; see {board / 'serve.log'}")
            time.sleep(0.3)
        post = lambda item: submit_archive(url, token, item[1], name=f"bench-{workers}-{item[0]}")["submission_id"]  # noqa: E731
        warm = archives[: workers]
        wait_done(url, token, [post((f"warm{k}", a)) for k, a in enumerate(warm)], timeout=1800)
        timed = list(enumerate(archives[workers: workers + args.n]))
        latencies: list[float] = []
        stop = threading.Event()

        def reader() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    client.get("/api/boards/test").raise_for_status()
                    latencies.append(time.perf_counter() - t0)
                    stop.wait(0.2)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, timed))
        posted = time.monotonic() - started
        wait_done(url, token, ids, timeout=3600)
        elapsed = time.monotonic() - started
        stop.set()
        thread.join()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    ms = sorted(x * 1000 for x in latencies)
    return {"workers": workers, "submissions": len(ids), "seconds": round(elapsed, 1),
            "posting_seconds": round(posted, 1), "per_minute": round(60 * len(ids) / elapsed, 2),
            "job_seconds": round(workers * elapsed / len(ids), 2),
            "board_read_ms": {"n": len(ms), "p50": round(statistics.median(ms), 1),
                              "p95": round(ms[int(0.95 * (len(ms) - 1))], 1), "max": round(ms[-1], 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="timed submissions per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--items", type=int, default=400, help="mini-MMTT size (its test split is scored)")
    parser.add_argument("--size", type=int, default=128, help="mini-MMTT image side")
    parser.add_argument("--workdir", default=".mmtt/bench-service")
    parser.add_argument("--score-args", default="--skip meteor --n-boot 200",
                        help="scoring options stamped by `mmtt serve` (default: no METEOR, 200 replicates)")
    parser.add_argument("--db", help="board URL (default: a fresh SQLite board per run)")
    parser.add_argument("--broker", help="broker URL (default: the embedded SQLite broker)")
    args = parser.parse_args()
    root = (REPO / args.workdir).absolute()
    data = root / "data"
    if not (data / "test-mutilabel.json").is_file():
        mmtt("data", "demo", "--out", str(data), "--n", str(args.items), "--size", str(args.size), "--quiet")
    n_test = len(json.loads((data / "test-mutilabel.json").read_text()))
    archives = make_archives(data, root / "archives", max(args.workers) + args.n)
    results = [run(w, args, data, archives, root) for w in args.workers]
    report = {"test_items": n_test, "score_args": args.score_args, "cpus": os.cpu_count(), "runs": results}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
