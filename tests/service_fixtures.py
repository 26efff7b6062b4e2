"""Real servers for the service tests: a throw-away PostgreSQL cluster and Redis, on loopback ports.

Both come from the system packages (`.ci/run` installs `postgresql` and `redis-server`). Without
them the tests that need them are skipped with the reason — except in CI (`CI=true`), where a
missing server is a failure. PostgreSQL runs as the `postgres` user (it refuses root) through
`runuser`, in a temp folder, with fsync off (a test cluster); Redis runs with no snapshots, or
with an append-only file where a restart must keep the queue.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(what: str) -> None:
    reason = f"{what} is not installed (apt-get install postgresql redis-server; .ci/run does it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"in CI: {reason}")
    pytest.skip(reason)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


@dataclass
class Postgres:
    """A running throw-away cluster; `new_database()` gives each test its own database."""

    root: Path
    port: int
    bins: dict[str, str]
    as_user: list[str] = field(default_factory=list)

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_user, *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        self._run(self.bins["pg_ctl"], "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", "start")

    def stop(self) -> None:
        self._run(self.bins["pg_ctl"], "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg2

        name = "t_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    bins = {n: _pg_bin(n) for n in ("initdb", "pg_ctl")}
    if not all(bins.values()):
        _missing("PostgreSQL (initdb, pg_ctl)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _missing("psycopg2 (pip install psycopg2-binary)")
    root = Path(tempfile.mkdtemp(prefix="mmtt-pg-"))   # not under pytest's 0700 root-owned folder
    as_user: list[str] = []
    if os.geteuid() == 0:   # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = Postgres(root=root, port=free_port(), bins=bins, as_user=as_user)   # type: ignore[arg-type]
    server._run(bins["initdb"], "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
                "-E", "UTF8", "--locale=C")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Redis:
    root: Path
    port: int
    persistent: bool
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--dir", str(self.root), *persistence],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()   # SIGTERM: with append-only on, everything acknowledged is on disk
            self.proc.wait(30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def _redis(tmp_path_factory, persistent: bool):
    if shutil.which("redis-server") is None:
        _missing("redis-server")
    server = Redis(root=tmp_path_factory.mktemp("redis"), port=free_port(), persistent=persistent)
    server.start()
    return server


@pytest.fixture
def redis_server(tmp_path_factory) -> Redis:
    """A Redis with an append-only file, so a restart keeps the queued jobs (one per test)."""
    server = _redis(tmp_path_factory, persistent=True)
    yield server
    server.stop()


# ------------------------------------------------------------------------------ service processes
@dataclass
class Service:
    """`mmtt serve --workers 0` (the API) plus `mmtt worker` processes, all on one board."""

    db: str
    data: Path
    broker: str
    files: Path
    logs: Path
    env: dict[str, str]
    port: int = 0
    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _common(self) -> list[str]:
        return ["--db", self.db, "--data", str(self.data), "--broker", self.broker, "--files", str(self.files)]

    def _spawn(self, args: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        out = open(self.logs / log, "ab")
        return subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **self.env, **(env or {})})

    def start_api(self, *score_args: str) -> None:
        self.port = free_port()
        self.api = self._spawn(["serve", *self._common(), "--port", str(self.port), "--workers", "0",
                                "--no-meteor", "--n-boot", "20", *score_args], "api.log")
        import httpx

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"the API exited: {(self.logs / 'api.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the API did not answer in 90 s")

    def start_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = self._spawn(["worker", *self._common(), "--loglevel", "WARNING"], f"worker{len(self.workers)}.log", env)
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.api]:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def run_page(self, at, timeout: float | None = None) -> None:
        """Click a Streamlit page's first button and run the page against this service; a page
        that times out (following a job that never ends) fails with what the service logged."""
        try:
            at.button[0].click().run(timeout=timeout)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def log_tail(self, n: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in sorted(self.logs.glob("*.log")))
