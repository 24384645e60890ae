"""`manage.py smtpserver --processes N`: N servers on one port, and a signal to the parent stops them all."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from mail.tls_certs import make_self_signed
from tests.faults.services import free_port, wait_for_port
from tests.worker_process import ROOT, worker_env


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.django_db
def test_two_processes_share_the_port_and_stop_together(tmp_path):
    port = free_port()
    cert, key = make_self_signed(tmp_path / "tls", "mx.test")
    env = worker_env(
        POSTWERK_SMTP_SUBMISSION=f"127.0.0.1:{port}",
        POSTWERK_SMTP_SUBMISSIONS="off",
        POSTWERK_SMTP_INBOUND="off",
        POSTWERK_SMTP_TLS_CERT=str(cert),
        POSTWERK_SMTP_TLS_KEY=str(key),
    )
    log = tmp_path / "smtpserver.log"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "smtpserver", "--processes", "2"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_for_port("127.0.0.1", port), log.read_text()
        children = _children(process.pid)
        assert len(children) == 2, (children, log.read_text())
        for _ in range(6):  # whichever process the kernel hands it to answers
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                code, _ = client.ehlo("client.test")
                assert code == 250
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, log.read_text()
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
