"""Private PostgreSQL and Redis instances for the fault tests: each on a free loopback port and a temporary data
folder, started, stopped and restarted by the test that owns it. The machine's shared servers (5432, 6379) are
never touched: other processes rely on them.

A missing server binary raises (the test fails, never skips): CI installs them (`.ci/run`, Debian's `postgresql`
and `redis-server`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_START_TIMEOUT = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = _START_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def client_tls() -> ssl.SSLContext:
    """A client context that accepts the test listeners' self-signed certificates."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def binary(name: str) -> str:
    """A server binary from PATH or Debian's versioned PostgreSQL folder; raises when it is not installed."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"{name} is not installed (Debian packages postgresql and redis-server)")
    return found


class PrivateRedis:
    """redis-server without persistence: a restart loses every queued task, the broker's worst case."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if not wait_for_port("127.0.0.1", self.port):
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster. PostgreSQL refuses to run as root, so as root (CI, this machine) every
    server command runs as the `postgres` system user, on a data folder it owns."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pw-faults-pg-"))
        self.datadir = self.root / "data"
        self.port = free_port()
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def url(self, name: str = "postwerk") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *command: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}\n{log}")

    def init(self) -> PrivatePostgres:
        # --no-sync: this cluster lives for one test session; durability across a power cut is not under test.
        self._run(binary("initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        return self

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run(binary("pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash (no checkpoint, recovery at the next start); `fast` a clean shutdown."""
        if (self.datadir / "postmaster.pid").exists():
            self._run(binary("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def sql(self, statement: str, name: str = "postwerk") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(name), autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def publishing_to(broker_url: str) -> Iterator[None]:
    """Make this test process publish delivery tasks to `broker_url` (a private broker) for a while.

    Celery caches its producer pool per broker URL on the app, so the URL and the cached pool change together.
    """
    from config.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = broker_url
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.broker_url = old
        app.amqp._producer_pool = None
