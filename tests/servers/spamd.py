"""A real SpamAssassin spamd (Debian's `spamd` and `spamc` packages) on loopback for the inbound spam check's
tests: local tests only (`--local`: no DNS blocklists or other network rules), no per-user configuration, the
Bayes and auto-learn files in a throwaway home. Ready when spamc's own PING is answered."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
HOST = "127.0.0.37"


def available() -> str:
    """Why spamd cannot run here, or "" when it can."""
    missing = [tool for tool in ("spamd", "spamc") if not shutil.which(tool, path=ENV["PATH"])]
    return f"missing {', '.join(missing)} (apt-get install spamassassin spamd spamc)" if missing else ""


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _wait_ready(port: int, log: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until spamc -K (PING) gets PONG: the rules are compiled and a child answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ping = subprocess.run(
            ["spamc", "-K", "-d", HOST, "-p", str(port), "-t", "5"], env=ENV, capture_output=True, timeout=30
        )
        if ping.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"spamd did not answer on {HOST}:{port}:\n{log.read_text() if log.exists() else ''}")


@contextmanager
def spamd() -> Iterator[str]:
    """The spamd address (host:port) while it runs."""
    assert available() == "", available()
    with tempfile.TemporaryDirectory(prefix="postwerk-spamd-") as tmp:
        home, log = Path(tmp) / "home", Path(tmp) / "spamd.log"
        home.mkdir()
        home.chmod(0o777)  # the child runs as nobody and keeps its Bayes files here
        port = _free_port(HOST)
        command = [
            "spamd",
            "--local",
            f"--listen={HOST}:{port}",
            "--allowed-ips=127.0.0.0/8",
            "--min-children=1",
            "--max-children=1",
            "--nouser-config",
            f"--helper-home-dir={home}",
            f"--pidfile={tmp}/spamd.pid",
            f"--syslog={log}",
        ]
        if os.geteuid() == 0:
            command += ["--username=nobody"]  # spamd refuses to run its children as root
        proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, log, proc)
            yield f"{HOST}:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)  # spamd ends its children on TERM
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
