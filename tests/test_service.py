"""The submission service end to end, on real servers (PostgreSQL + Redis) and on the embedded
default (SQLite board + SQLite broker): concurrent intake under the daily limit, 2 worker
processes scoring every submission exactly once, a worker killed with SIGKILL while it commits,
broker and database restarts with jobs queued, an interrupted upload, the public board read
while the workers are busy (latency reported), OpenAPI, and `mmtt remote submit --wait`."""

from __future__ import annotations

import json
import os
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
import pytest
from sqlalchemy import func, select

from benchmark.errors import BenchmarkError
from benchmark.service.client import submit_archive
from benchmark.store.board import Board
from benchmark.store.models import IN_PROGRESS, Entry, Evaluation, Score, Setting, Submission
from benchmark.store.tokens import new_token, setting_key
from tests.conftest import write_submission
from tests.service_fixtures import REPO, Postgres, Redis, Service, free_port, postgres, redis_server  # noqa: F401

FAST_ENV = {"MMTT_LEASE_S": "4", "MMTT_VISIBILITY_S": "8", "MMTT_REQUEUE_AFTER_S": "30", "MMTT_DB_TIMEOUT": "120",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A tiny mini-MMTT (generated as `mmtt data demo` does): its test split is what gets scored."""
    from benchmark.data.synth import generate

    root = tmp_path_factory.mktemp("mini") / "data"
    generate(root, n=40, seed=3, size=64, workers=1, progress=False)
    return root, json.loads((root / "test-mutilabel.json").read_text())


@pytest.fixture(scope="module")
def archives(mini, tmp_path_factory) -> list[Path]:
    """60 distinct submission archives (different seeds), written once per module."""
    _, records = mini
    out = tmp_path_factory.mktemp("archives")
    paths = []
    for k in range(60):
        folder = write_submission(out / f"s{k}", records, seed=100 + k, pred_size=32,
                                  manifest={"model": f"model-{k}", "team": "from-manifest", "authors": "A. Author"})
        archive = out / f"s{k}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=path.relative_to(folder).as_posix())
        paths.append(archive)
    return paths


@pytest.fixture(params=["embedded", "servers"])
def backend(request, tmp_path) -> tuple[str, str, str]:
    """(name, db URL, broker URL): the embedded default, or PostgreSQL + Redis."""
    if request.param == "embedded":
        db = f"sqlite:///{tmp_path / 'board.sqlite'}"
        return "embedded", db, f"sqla+sqlite:///{tmp_path / 'board.broker.sqlite'}"
    pg: Postgres = request.getfixturevalue("postgres")
    redis: Redis = request.getfixturevalue("redis_server")
    request.node.redis = redis
    request.node.pg = pg
    return "servers", pg.new_database(), redis.url()


@pytest.fixture
def service(backend, mini, tmp_path) -> Service:
    _, db, broker = backend
    data, _ = mini
    logs = tmp_path / "logs"
    logs.mkdir()
    svc = Service(db=db, data=data, broker=broker, files=tmp_path / "files", logs=logs,
                  env={**FAST_ENV, "MMTT_CACHE_DIR": str(tmp_path / "cache")})
    yield svc
    svc.stop()


def issue_tokens(db: str, files: Path, teams: list[str], data: Path | None = None) -> dict[str, str]:
    """Tokens for `teams` (and, given the data, the test split registered, as a maintainer does first)."""
    from benchmark.cli import main

    if data is not None:
        assert main(["split", "add", "--db", db, "--data", str(data), "--split", "test"]) == 0
    with Board.open(db, files) as board:
        def write(session) -> dict[str, str]:
            out = {}
            for team in teams:
                token, record = new_token(team)
                session.add(Setting(key=setting_key(record.id), value=record.to_value()))
                out[team] = token
            return out

        return board.db.write(write)


def post_all(service: Service, jobs: list[tuple[str, Path, str]]) -> list[dict | BenchmarkError]:
    """Post (token, archive, entry name) jobs all at once, from 16 threads."""
    def one(job):
        token, archive, name = job
        try:
            return submit_archive(service.url, token, archive, name=name)
        except BenchmarkError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, jobs))


def wait_settled(service: Service, timeout: float) -> dict[str, int]:
    """Wait until no submission is queued or running; returns the count per status."""
    deadline = time.monotonic() + timeout
    with Board.open(service.db, service.files, upgrade=False) as board:
        while True:
            counts = board.db.read(lambda s: dict(s.execute(
                select(Submission.status, func.count()).group_by(Submission.status)).all()))
            if not any(counts.get(s) for s in IN_PROGRESS):
                return counts
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled after {timeout:.0f} s: {counts}\n{service.log_tail()}")
            time.sleep(0.5)


def exactly_once(service: Service, accepted: list[int]) -> None:
    """Every accepted submission scored, with exactly one evaluation and a full set of scores."""
    with Board.open(service.db, service.files, upgrade=False) as board:
        def read(session):
            statuses = dict(session.execute(select(Submission.id, Submission.status)
                                            .where(Submission.id.in_(accepted))).all())
            evaluations = dict(session.execute(select(Evaluation.submission_id, func.count())
                                               .group_by(Evaluation.submission_id)).all())
            per_eval = set(session.scalars(select(func.count()).select_from(Score).group_by(Score.evaluation_id)))
            n_entries = session.scalar(select(func.count()).select_from(Entry))
            return statuses, evaluations, per_eval, n_entries

        statuses, evaluations, per_eval, n_entries = board.db.read(read)
    assert set(statuses.values()) == {"scored"}, (statuses, service.log_tail())
    assert sorted(evaluations) == sorted(accepted) and set(evaluations.values()) == {1}, evaluations
    assert len(per_eval) == 1, f"evaluations with different numbers of score rows: {per_eval}"
    assert n_entries == len(accepted)


class BoardReader:
    """Reads the public board every 0.1 s while the workers are busy; keeps every latency."""

    def __init__(self, url: str) -> None:
        self.url, self.latencies, self.errors = url, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    resp = client.get("/api/boards/test")
                    resp.raise_for_status()
                    assert "rows" in resp.json()
                    self.latencies.append(time.perf_counter() - started)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    self.errors.append(repr(exc))
                self._stop.wait(0.1)

    def __enter__(self) -> "BoardReader":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, float]:
        ms = sorted(x * 1000 for x in self.latencies)
        return {"reads": len(ms), "errors": len(self.errors), "p50_ms": round(statistics.median(ms), 1),
                "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1), "max_ms": round(ms[-1], 1)}


def run_flow(service: Service, backend_name: str, archives: list[Path], n_teams: int, per_team: int,
             tmp_path: Path) -> dict:
    teams = [f"team-{t}" for t in range(n_teams)]
    tokens = issue_tokens(service.db, service.files, teams, service.data)
    service.start_api()
    service.start_worker()
    service.start_worker()
    jobs = [(tokens[team], archives[t * per_team + k], f"{team}-entry-{k}")
            for t, team in enumerate(teams) for k in range(per_team)]
    jobs.append((tokens[teams[0]], archives[n_teams * per_team], f"{teams[0]}-one-too-many"))   # over the limit
    started = time.monotonic()
    with BoardReader(service.url) as reader:
        answers = post_all(service, jobs)
        accepted = [a["submission_id"] for a in answers if isinstance(a, dict)]
        refused = [a for a in answers if isinstance(a, BenchmarkError)]
        counts = wait_settled(service, timeout=60 + 20 * len(jobs))
    elapsed = time.monotonic() - started
    assert len(accepted) == n_teams * per_team, [str(r) for r in refused]
    assert len(refused) == 1 and "HTTP 429" in str(refused[0]) and "5 submission(s)" in str(refused[0])
    exactly_once(service, accepted)
    assert counts.get("failed", 0) == 1     # the refused one, recorded as failed (it does not count)
    latency = {**reader.report(), "backend": backend_name, "submissions": len(accepted),
               "seconds": round(elapsed, 1), "per_minute": round(60 * len(accepted) / elapsed, 1)}
    assert latency["errors"] == 0 and latency["reads"] > 0, reader.errors[:3]
    print(f"\nservice flow ({backend_name}): {json.dumps(latency)}")   # the figures the README quotes (-s)
    # the public board: every entry, metrics with CIs and stamps, as JSON and CSV
    board = httpx.get(service.url + "/api/boards/test").json()["rows"]
    assert len(board) == n_teams   # one entry per team (best)
    assert all(r["metrics"]["iou"] is not None and r["ci95"]["iou"] and r["dataset_fingerprint"] for r in board)
    csv_text = httpx.get(service.url + "/api/boards/test.csv").text
    assert csv_text.splitlines()[0].startswith("rank,entry,team") and len(csv_text.splitlines()) == n_teams + 1
    return latency


def test_flow_posts_from_several_teams_are_each_scored_exactly_once(backend, service, archives, tmp_path) -> None:
    run_flow(service, backend[0], archives, n_teams=2, per_team=5, tmp_path=tmp_path)


@pytest.mark.slow
def test_flow_50_submissions_from_10_teams(backend, service, archives, tmp_path) -> None:
    run_flow(service, backend[0], archives, n_teams=10, per_team=5, tmp_path=tmp_path)


def test_worker_killed_with_sigkill_while_committing_is_redone_exactly_once(backend, service, archives,
                                                                            tmp_path) -> None:
    tokens = issue_tokens(service.db, service.files, ["lab"])
    service.start_api()
    mark = tmp_path / "paused"
    doomed = service.start_worker({"MMTT_STORE_PAUSE_AT": "commit", "MMTT_STORE_PAUSE_FILE": str(mark)})
    answer = submit_archive(service.url, tokens["lab"], archives[0], name="survivor")
    deadline = time.monotonic() + 180
    while not mark.exists():
        assert time.monotonic() < deadline and doomed.poll() is None, service.log_tail()
        time.sleep(0.1)
    status = httpx.get(f"{service.url}/api/submissions/{answer['submission_id']}",
                       headers={"Authorization": f"Bearer {tokens['lab']}"}).json()
    assert status["status"] == "running"
    os.kill(doomed.pid, signal.SIGKILL)   # everything written in the final transaction, not committed
    doomed.wait()
    service.start_worker()
    wait_settled(service, timeout=180)
    exactly_once(service, [answer["submission_id"]])
    final = httpx.get(f"{service.url}/api/submissions/{answer['submission_id']}",
                      headers={"Authorization": f"Bearer {tokens['lab']}"}).json()
    assert final["status"] == "scored" and final["summary"]["metrics"]["iou"] is not None


def test_queued_jobs_survive_broker_and_database_restarts(backend, service, archives, request) -> None:
    name = backend[0]
    tokens = issue_tokens(service.db, service.files, ["lab"])
    service.start_api()
    answers = post_all(service, [(tokens["lab"], archives[k], f"queued-{k}") for k in range(3)])
    ids = [a["submission_id"] for a in answers]
    positions = sorted(httpx.get(f"{service.url}/api/submissions/{i}",
                                 headers={"Authorization": f"Bearer {tokens['lab']}"}).json()["position"] for i in ids)
    assert positions == [1, 2, 3]
    if name == "servers":
        request.node.redis.restart()   # append-only file: the queued messages come back
        request.node.pg.restart()
    service.start_worker()
    wait_settled(service, timeout=240)
    exactly_once(service, ids)


def test_a_job_the_broker_refused_is_sent_by_the_next_sweep(backend, service, archives, request) -> None:
    """The broker cannot take the job when the API sends it (Redis stopped; the SQLite broker's
    file locked by another writer for longer than a send waits): the API still answers 202, says
    so in its log, and the workers' next sweep sends it — not the stuck-row rule, 10 minutes later."""
    import sqlite3

    name = backend[0]
    tokens = issue_tokens(service.db, service.files, ["lab"])
    service.start_api()
    if name == "servers":
        request.node.redis.stop()
        lock = None
    else:
        lock = sqlite3.connect(service.broker.removeprefix("sqla+sqlite:///"), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
    try:
        answer = submit_archive(service.url, tokens["lab"], archives[0], name="refused")
        assert answer["status"] == "queued", answer
        assert "could not be sent to the queue" in (service.logs / "api.log").read_text(), service.log_tail()
    finally:
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
    if name == "servers":
        request.node.redis.start()
    service.start_worker(env={"MMTT_REQUEUE_AFTER_S": "600"})   # the stuck-row rule's default
    wait_settled(service, timeout=120)                           # the sweep runs every 2 s here
    exactly_once(service, [answer["submission_id"]])
    assert "re-queued" in service.log_tail()


def test_interrupted_upload_writes_nothing_and_bad_requests_are_refused(service, archives) -> None:
    tokens = issue_tokens(service.db, service.files, ["lab"])
    service.start_api()
    payload = archives[0].read_bytes()
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall((f"POST /api/submissions?name=cut&filename=s.tar.gz HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {tokens['lab']}\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload[: len(payload) // 2])
    time.sleep(1.0)
    with Board.open(service.db, service.files, upgrade=False) as board:
        assert board.db.read(lambda s: s.scalar(select(func.count()).select_from(Submission))) == 0
    objects = service.files / "objects"
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))
    uploads = service.files / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    with pytest.raises(BenchmarkError, match="HTTP 401"):
        submit_archive(service.url, "mmtt_00000000_" + "a" * 43, archives[0], name="x")
    with pytest.raises(BenchmarkError, match="HTTP 404"):
        submit_archive(service.url, tokens["lab"], archives[0], name="x", split="nope")
    spec = httpx.get(service.url + "/openapi.json").json()
    assert {"/api/submissions", "/api/submissions/{submission_id}", "/api/boards/{split}",
            "/api/boards/{split}.csv"} <= set(spec["paths"])


def test_remote_submit_waits_and_reports_every_problem(service, mini, archives, tmp_path) -> None:
    tokens = issue_tokens(service.db, service.files, ["lab"])
    service.start_api()
    service.start_worker()
    cli = [sys.executable, "-m", "benchmark", "remote", "submit", "--url", service.url, "--token", tokens["lab"],
           "--wait", "--poll", "0.3", "--json"]
    good = subprocess.run([*cli, str(archives[1]), "--name", "remote-good"], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert good.returncode == 0, good.stderr
    answer = json.loads(good.stdout)
    assert answer["status"] == "scored" and answer["summary"]["split"] == "test"
    _, records = mini
    bad = write_submission(tmp_path / "bad", records[2:], seed=5, manifest={"model": "m", "team": "t"},
                           extra_lines=['{"image_id": "nope", "caption": "x"}'])
    failed = subprocess.run([*cli, str(bad), "--name", "remote-bad"], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "failed" in failed.stderr and "nope" in failed.stderr and "no prediction" in failed.stderr


def test_hidden_split_is_never_served_per_sample(service, mini, tmp_path) -> None:
    """A hidden split: the submitter's status and the public board carry aggregates and CIs only."""
    from benchmark.cli import main

    data, _ = mini
    assert main(["split", "add", "--db", service.db, "--data", str(data), "--split", "eval", "--hidden"]) == 0
    tokens = issue_tokens(service.db, service.files, ["lab"])
    service.start_api()
    service.start_worker()
    records = json.loads((data / "eval-mutilabel.json").read_text())
    folder = write_submission(tmp_path / "hidden", records, seed=9, manifest={"model": "m", "team": "t"})
    answer = submit_archive(service.url, tokens["lab"], folder, name="on-hidden", split="eval")
    wait_settled(service, timeout=180)
    final = httpx.get(f"{service.url}/api/submissions/{answer['submission_id']}",
                      headers={"Authorization": f"Bearer {tokens['lab']}"}).json()
    assert final["status"] == "scored" and final["summary"]["metrics"]["iou"] is not None
    assert "breakdown" not in final["summary"] and "per_sample" not in json.dumps(final)
    rows = httpx.get(service.url + "/api/boards/eval").json()["rows"]
    assert [r["entry"] for r in rows] == ["on-hidden"] and rows[0]["ci95"]
    assert not {"breakdown", "per_sample", "samples"} & set(rows[0])


def test_migrations_run_on_postgresql_and_match_the_models(postgres) -> None:
    """Every revision up, all the way down, up again, on a real PostgreSQL; then `alembic check`."""
    from sqlalchemy import inspect

    from benchmark.store import migrate
    from benchmark.store.db import Database
    from tests.test_store_helpers import TABLES
    from tests.test_store_schema import _diff

    database = Database.open(postgres.new_database())
    try:
        for rev in migrate.revisions():
            migrate.upgrade(database, rev)
            assert migrate.current_revision(database) == rev
        migrate.downgrade(database, "base")
        assert not set(TABLES) & set(inspect(database.engine).get_table_names())
        migrate.upgrade(database)
        assert migrate.current_revision(database) == migrate.head_revision()
        assert _diff(database) == []
    finally:
        database.dispose()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's children from /proc")
def test_serve_killed_outright_leaves_no_worker_behind(mini, tmp_path) -> None:
    """`mmtt serve` SIGKILLed (no chance to stop its workers) and a worker whose parent died before
    it was ready: each worker stops by itself."""
    data, _ = mini
    db, port = tmp_path / "board.sqlite", free_port()
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "benchmark", "serve", "--db", str(db), "--data", str(data),
                              "--port", str(port), "--no-meteor"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, **FAST_ENV})
    try:
        deadline, workers = time.monotonic() + 90, []
        while not workers and time.monotonic() < deadline:
            children = Path(f"/proc/{serve.pid}/task/{serve.pid}/children")
            workers = [int(p) for p in children.read_text().split()] if children.exists() else []
            time.sleep(0.2)
        assert workers, (tmp_path / "serve.log").read_text()[-2000:]
        time.sleep(8)   # the worker is up and waiting for jobs
        serve.kill()
        serve.wait()
        deadline = time.monotonic() + 60
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(_alive(w) for w in workers), (tmp_path / "serve.log").read_text()[-2000:]
        assert "the process that started this worker has ended" in (tmp_path / "serve.log").read_text()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    # a worker told of a parent it does not have (that parent died before it got going) stops too
    orphan = subprocess.run([sys.executable, "-m", "benchmark", "worker", "--db", str(db), "--data", str(data),
                             "--parent", str(serve.pid)], cwd=REPO, capture_output=True, timeout=120,
                            env={**os.environ, **FAST_ENV})
    assert orphan.returncode in (0, -signal.SIGTERM), orphan.stderr.decode()[-2000:]
