"""A third-party signer for the inbound verifier's tests: OpenDKIM (Debian's `opendkim`) as a milter behind a
throwaway Postfix instance (the recipe of tests/data/bounces/generate_postfix.py), relaying to a loopback sink.
Mail submitted to the Postfix port leaves it signed by OpenDKIM exactly as a real sender's MTA would sign it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.data.bounces.generate_postfix import write_postfix_config

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_port(port: int, what: str, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}:\n{log.read_text() if log.exists() else ''}")


def available() -> str:
    """Why these tests cannot run here, or "" when they can."""
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    missing = [tool for tool in ("opendkim", "opendkim-genkey", "postfix") if not shutil.which(tool, path=ENV["PATH"])]
    return f"missing {', '.join(missing)} (apt-get install opendkim opendkim-tools postfix)" if missing else ""


@contextmanager
def opendkim_postfix(*, domain: str, selector: str, relay: tuple[str, int]) -> Iterator[tuple[int, str]]:
    """(the Postfix smtpd port, the DKIM public key record text) while OpenDKIM and Postfix run."""
    # Not pytest's tmp_path: its parent is private to root, and the postfix user must reach the queue.
    root = Path(tempfile.mkdtemp(prefix="postwerk-opendkim-"))
    root.chmod(0o755)
    keys = root / "keys"
    keys.mkdir()
    subprocess.run(
        ["opendkim-genkey", "-b", "2048", "-h", "sha256", "-d", domain, "-s", selector, "-D", str(keys)],
        env=ENV,
        check=True,
        capture_output=True,
        timeout=60,
    )
    record = (keys / f"{selector}.txt").read_text()
    public = "".join(part for part in record.split('"')[1::2])  # the quoted strings of the zone file line
    milter_port = _free_port()
    conf = root / "opendkim.conf"
    conf.write_text(
        f"""Syslog no
Mode s
Domain {domain}
Selector {selector}
KeyFile {keys / f"{selector}.private"}
SignatureAlgorithm rsa-sha256
Canonicalization relaxed/simple
Socket inet:{milter_port}@127.0.0.1
PidFile {root / "opendkim.pid"}
UMask 002
RequireSafeKeys false
UserID root
InternalHosts 127.0.0.0/8
"""
    )
    log = root / "opendkim.log"
    with log.open("wb") as out:
        milter = subprocess.Popen(["opendkim", "-f", "-x", str(conf)], env=ENV, stdout=out, stderr=subprocess.STDOUT)
    postfix_root = root / "postfix"
    postfix_root.mkdir()
    postfix_root.chmod(0o755)
    smtpd_port = _free_port()
    write_postfix_config(postfix_root, smtpd_port, relay[1])
    settings = [
        f"smtpd_milters = inet:127.0.0.1:{milter_port}",
        "milter_default_action = tempfail",
        "myhostname = mta.sender.example",
        f"relayhost = [{relay[0]}]:{relay[1]}",
    ]
    postconf = ["postconf", "-c", str(postfix_root / "conf"), "-e", *settings]
    subprocess.run(postconf, env=ENV, check=True, capture_output=True, timeout=30)
    try:
        _wait_port(milter_port, "opendkim", log)
        started = subprocess.run(
            ["postfix", "-c", str(postfix_root / "conf"), "start"], env=ENV, capture_output=True, text=True, timeout=60
        )
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed: {started.stdout}{started.stderr}")
        _wait_port(smtpd_port, "postfix", postfix_root / "maillog")
        yield smtpd_port, public
    finally:
        subprocess.run(["postfix", "-c", str(postfix_root / "conf"), "stop"], env=ENV, capture_output=True, timeout=60)
        milter.terminate()
        milter.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
