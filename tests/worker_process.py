"""Real Celery worker processes for end-to-end tests, pointed at the test database and loopback network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The URL of the database this test process uses (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        SECRET_KEY=settings.SECRET_KEY,
        POSTWERK_ENCRYPTION_KEY=settings.POSTWERK_ENCRYPTION_KEY.decode(),
        POSTWERK_DATA_DIR=str(settings.DATA_DIR),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        POSTWERK_DNS_SERVERS=",".join(f"{h}:{p}" for h, p in settings.POSTWERK_DNS_SERVERS),
        POSTWERK_SMTP_DELIVERY_PORT=str(settings.POSTWERK_SMTP_DELIVERY_PORT),
        POSTWERK_SMTP_CONNECT_TIMEOUT="3",
        POSTWERK_SMTP_COMMAND_TIMEOUT="30",
        POSTWERK_HOSTNAME=settings.POSTWERK_HOSTNAME,
        POSTWERK_DELIVERY_PENDING_TTL=str(settings.POSTWERK_DELIVERY_PENDING_TTL),
        POSTWERK_DELIVERY_PENDING_NAMESPACE=settings.POSTWERK_DELIVERY_PENDING_NAMESPACE,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Worker:
    """`celery worker` in its own process group, so kill -9 takes the whole pool with it."""

    def __init__(self, log_dir: Path, extra_args: tuple[str, ...] = (), **env: str) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.extra_args = extra_args  # e.g. ("-B", "-s", path): beat in the same process, for the sweep
        self.log_path = log_dir / f"{self.name.split('@')[0]}.log"
        self.env = worker_env(**env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "delivery-high,delivery,delivery-broadcast-high,delivery-broadcast,default",
                "-P",
                "solo",
                "-n",
                self.name,
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
                *self.extra_args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, exactly like a machine losing power."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
