"""`mmtt serve`, `mmtt worker`, `mmtt remote submit`: the submission service's verbs.

`mmtt serve --db URL --data DIR [--broker URL] [--port P] [--workers N]` runs the API (uvicorn)
and N local worker processes (default 1; `--workers 0` for none: run `mmtt worker` elsewhere).
Without `--broker`, a SQLite board gets a SQLite broker file beside it: nothing else to start.
`mmtt worker` runs one more worker, on any machine that sees the store, the kept files and the data.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.scoring.options import add_arguments as add_score_arguments

STOP_GRACE_S = 30.0


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def worker_command(settings, *, loglevel: str = "WARNING") -> list[str]:
    """The command line of one local worker for `settings` (what `mmtt serve` starts N times; each
    stops when `serve` is gone, however it ended)."""
    cmd = [sys.executable, "-m", "benchmark", "worker", "--db", settings.db, "--broker", settings.broker,
           "--data", str(settings.data), "--loglevel", loglevel, "--parent", str(os.getpid())]
    if settings.files:
        cmd += ["--files", str(settings.files)]
    return cmd


def _stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM (a worker finishes its job, then exits), then SIGKILL after the grace period, or at
    once on a second Ctrl-C / SIGTERM meanwhile."""
    def now(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, now)
    try:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            proc.wait(max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def cmd_serve(args: argparse.Namespace) -> int:
    from benchmark.service.api import serve_api
    from benchmark.service.settings import settings_from_args
    from benchmark.store.board import Board

    settings = settings_from_args(args, need_data=args.worker_processes > 0)
    if args.worker_processes < 0:
        raise BenchmarkError("--workers must be 0 or more")
    with Board.open(settings.db, settings.files):   # create / upgrade the schema before anyone uses it
        pass
    procs = [subprocess.Popen(worker_command(settings, loglevel=args.loglevel)) for _ in range(args.worker_processes)]
    mode = "embedded (SQLite broker)" if settings.embedded else f"broker {_shown(settings.broker)}"
    print(f"MMTT submission API at http://{args.address}:{args.port}  ({args.worker_processes} local worker(s), {mode}; "
          "OpenAPI at /docs; Ctrl-C stops it)", flush=True)
    try:
        serve_api(settings, host=args.address, port=args.port)
    except KeyboardInterrupt:
        pass
    finally:
        _stop_all(procs)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from benchmark.service.settings import settings_from_args
    from benchmark.service.worker import run_worker

    return run_worker(settings_from_args(args, need_data=True), loglevel=args.loglevel, parent=args.parent)


def cmd_remote_submit(args: argparse.Namespace) -> int:
    from benchmark.service.client import submit_archive, wait

    token = args.token or os.environ.get("MMTT_TOKEN", "")
    if not token:
        raise BenchmarkError("--token is required (or $MMTT_TOKEN): the team's submission token")
    progress = not args.quiet and sys.stderr.isatty() or args.progress
    answer = submit_archive(args.url, token, args.submission, name=args.name, split=args.split,
                            allow_missing=args.allow_missing, progress=progress)
    if args.wait and answer.get("status") not in ("scored", "failed"):
        answer = wait(args.url, token, answer["submission_id"], poll_s=args.poll, timeout_s=args.timeout,
                      progress=progress)
    if args.json:
        _print_json(answer)
    else:
        print(_describe(answer))
    if answer.get("status") == "failed":
        raise BenchmarkError(f"submission #{answer['submission_id']} failed", problems=answer.get("problems") or [])
    return 0


def _describe(answer: dict[str, Any]) -> str:
    head = f"submission #{answer.get('submission_id')} ({answer.get('entry')}, split {answer.get('split')}): " \
           f"{answer.get('status')}"
    if answer.get("status") == "queued":
        return head + f", position {answer.get('position')} in the queue"
    if answer.get("status") == "scored":
        metrics = (answer.get("summary") or answer).get("metrics") or {}
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, (int, float)))
        return head + ("\n  " + shown if shown else "")
    return head


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a broker URL SQLAlchemy does not parse
        return url.split("@")[-1]


def _service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="SQLAlchemy URL or SQLite file (default $MMTT_DB, else .mmtt/board.sqlite)")
    p.add_argument("--data", help="data root (the truth workers score against)")
    p.add_argument("--broker", help="Celery broker URL, e.g. redis://HOST:6379/0 (default for a SQLite board: "
                                    "a SQLite broker file beside it)")
    p.add_argument("--files", help="folder of kept submission files (default: the store's rule)")
    p.add_argument("--loglevel", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `serve`, `worker` and `remote submit` on the `mmtt` parser."""
    p = sub.add_parser("serve", help="the submission API (and its local scoring workers)",
                       description=__doc__.splitlines()[0])
    _service_args(p)
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--address", default="127.0.0.1", help="interface (default 127.0.0.1; 0.0.0.0 to publish it)")
    p.add_argument("--workers", dest="worker_processes", type=int, default=1,
                   help="local worker processes (default 1; 0: none)")
    p.add_argument("--max-upload-mb", type=float, help="override of the board's max_upload_mb rule")
    add_score_arguments(p, protocol=False, local=False)   # stamped on every submission the API queues
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="one more scoring worker for the submission API (any machine)")
    _service_args(p)
    add_score_arguments(p, protocol=False, method=False)   # the method options are each submission's own
    p.add_argument("--parent", type=int, metavar="PID",
                   help="stop (after the current job) once process PID, which started this worker, has ended "
                        "(`mmtt serve` passes its own)")
    p.set_defaults(func=cmd_worker)

    remote = sub.add_parser("remote", help="talk to a remote submission API")
    remote_sub = remote.add_subparsers(dest="remote_command", required=True, metavar="ACTION")
    p = remote_sub.add_parser("submit", help="upload a submission to the API (and optionally wait for its score)")
    p.add_argument("submission", help="submission folder or .zip/.tar.gz (manifest.json required)")
    p.add_argument("--url", required=True, help="the API's address, e.g. https://board.example.org")
    p.add_argument("--token", help="the team's submission token (default $MMTT_TOKEN)")
    p.add_argument("--name", required=True, help="entry name on the board")
    p.add_argument("--split", default="test")
    p.add_argument("--allow-missing", action="store_true",
                   help="score ids without a prediction as an empty mask and explanation")
    p.add_argument("--wait", action="store_true", help="wait until it is scored or failed")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between status checks with --wait")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
    p.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    p.set_defaults(func=cmd_remote_submit)
