"""Fixtures of the fault tests: private Redis and PostgreSQL instances, and Postwerk processes pointed at them.

The PostgreSQL cluster is made, migrated and provisioned (organization, verified acme.example, SMTP credential,
API key) once per test session through Postwerk's own `migrate` and `provision` commands, whatever database the rest
of the suite runs on: these tests only make sense against a server that can be stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SENDER_DOMAIN
from tests.faults.services import PrivatePostgres, PrivateRedis, free_port, wait_for_port
from tests.servers import DnsServer, make_self_signed
from tests.worker_process import ROOT, worker_env


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path).start()
    yield redis
    redis.stop()


@dataclass
class Provisioned:
    pg: PrivatePostgres
    env: dict[str, str]  # what every Postwerk process pointed at this cluster gets
    api_key: str
    smtp_username: str
    smtp_password: str


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def private_postgres(dns_server: DnsServer, mx_port: int) -> Iterator[Provisioned]:
    pg = PrivatePostgres().init().start()
    data_dir = Path(tempfile.mkdtemp(prefix="pw-faults-data-"))
    try:
        pg.sql("CREATE DATABASE postwerk", "postgres")
        cert, key = make_self_signed(data_dir, "smtp.postwerk.example")
        env = worker_env(
            DATABASE_URL=pg.url(),
            POSTWERK_DATA_DIR=str(data_dir),
            POSTWERK_DNS_SERVERS=f"{dns_server.address[0]}:{dns_server.address[1]}",
            POSTWERK_SMTP_DELIVERY_PORT=str(mx_port),
            POSTWERK_HOSTNAME="mta.postwerk.example",
            POSTWERK_RETURN_PATH_DOMAIN="bounces.postwerk.example",
            POSTWERK_SMTP_TLS_CERT=str(cert),
            POSTWERK_SMTP_TLS_KEY=str(key),
        )
        manage(env, "migrate", "--noinput")
        first = json.loads(manage(env, "provision", "--org", "Acme", "--domain", SENDER_DOMAIN,
                                  "--smtp-credential", "app", "--json"))  # fmt: skip
        for record in first["dns_records"]:
            if record["purpose"] in ("ownership", "dkim", "return_path"):
                dns_server.add(record["name"], record["type"], record["value"])
        verified = json.loads(manage(env, "provision", "--org", "Acme", "--domain", SENDER_DOMAIN, "--no-api-key",
                                     "--verify", "--json"))  # fmt: skip
        assert verified["verified"][SENDER_DOMAIN], verified
        yield Provisioned(pg, env, first["api_key"], first["smtp_username"], first["smtp_password"])
    finally:
        pg.remove()
        shutil.rmtree(data_dir, ignore_errors=True)


class Process:
    """A Postwerk process (`manage.py smtpserver`, gunicorn) in its own session, with its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port, self.log_path = port, log
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        if not wait_for_port("127.0.0.1", port):
            self.stop()
            raise RuntimeError(f"{args} did not listen on {port}: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@pytest.fixture
def smtp_process(private_postgres: Provisioned, private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Process]:
    """`manage.py smtpserver` with only its submission listener, on the private database and broker."""
    port = free_port()
    env = dict(
        private_postgres.env,
        CELERY_BROKER_URL=private_redis.url(),
        POSTWERK_SMTP_SUBMISSION=f"127.0.0.1:{port}",
        POSTWERK_SMTP_SUBMISSIONS="off",
        POSTWERK_SMTP_INBOUND="off",
    )
    process = Process([sys.executable, "manage.py", "smtpserver"], env, tmp_path / "smtpserver.log", port)
    yield process
    process.stop()


@pytest.fixture
def web_process(private_postgres: Provisioned, private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Process]:
    """The API under gunicorn, on the private database and broker."""
    port = free_port()
    env = dict(private_postgres.env, CELERY_BROKER_URL=private_redis.url())
    args = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--timeout", "60"]  # fmt: skip
    process = Process(args, env, tmp_path / "web.log", port)
    yield process
    process.stop()
