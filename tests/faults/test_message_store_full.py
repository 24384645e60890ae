"""A message store that cannot take the message: full disk, or a message over the size limit. The client gets a
clear refusal (SMTP 451 4.3.0 / API 503 for a full disk, 552 5.3.4 / 413 for oversize) and nothing is stored,
not a message without recipients, not a recipient without its event.

The full disk is real: the private PostgreSQL cluster keeps the message table (and its TOAST table, where large
bodies go) in a tablespace on a 1 MiB tmpfs, so PostgreSQL's own write fails with ENOSPC ("could not extend
file ... No space left on device") in the middle of the insert. Mounting needs root, as CI and this machine run.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import smtplib
import string
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sending.models import Event, Message, Recipient
from tests.faults.conftest import Process, Provisioned
from tests.faults.services import client_tls

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

TABLES = ("sending_message", "sending_recipient", "sending_event", "sending_messagetag")


def noise(size: int) -> str:
    """Text PostgreSQL cannot compress much below its size, in lines of a sane length."""
    rng = random.Random(size)
    alphabet = string.ascii_letters + string.digits
    line = 76
    return "\r\n".join("".join(rng.choices(alphabet, k=line)) for _ in range(size // (line + 2)))


@pytest.fixture
def full_disk(private_postgres: Provisioned) -> Iterator[None]:
    assert os.geteuid() == 0, "the full-disk test mounts a tmpfs: run it as root (CI does)"
    pg = private_postgres.pg
    mount = Path(tempfile.mkdtemp(prefix="pw-faults-full-"))
    owner = pwd.getpwnam("postgres")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=1m,mode=0700,uid={owner.pw_uid},gid={owner.pw_gid}", "tmpfs", str(mount)],
        check=True,
    )
    try:
        pg.sql(f"CREATE TABLESPACE tiny LOCATION '{mount}'")
        pg.sql("ALTER TABLE sending_message SET TABLESPACE tiny")
        yield
    finally:
        pg.sql("ALTER TABLE sending_message SET TABLESPACE pg_default")
        pg.sql("DROP TABLESPACE IF EXISTS tiny")
        subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


def counts(private_postgres: Provisioned) -> dict[str, int]:
    return {t: private_postgres.pg.sql(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}  # noqa: S608


def smtp_submit(process: Process, provisioned: Provisioned, body: str) -> tuple[int, bytes]:
    raw = f"From: app@acme.example\r\nTo: jane@dest.example\r\nSubject: big\r\n\r\n{body}\r\n".encode()
    with smtplib.SMTP("127.0.0.1", process.port, timeout=60) as client:
        client.starttls(context=client_tls())
        client.login(provisioned.smtp_username, provisioned.smtp_password)
        try:
            client.sendmail("app@acme.example", ["jane@dest.example"], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
    return 250, b""


def api_submit(process: Process, provisioned: Provisioned, body: str) -> tuple[int, dict, dict]:
    payload = {"from": "app@acme.example", "to": ["jane@dest.example"], "subject": "big", "text": body}
    request = urllib.request.Request(
        f"http://127.0.0.1:{process.port}/api/v1/messages",
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {provisioned.api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback, our own server
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def test_full_disk_is_451_and_503_with_nothing_stored_then_the_same_message_goes_through(
    private_postgres, smtp_process, web_process, full_disk
):
    private_postgres.pg.sql("TRUNCATE sending_message CASCADE")  # other fault tests share the cluster
    body = noise(3_000_000)

    code, text = smtp_submit(smtp_process, private_postgres, body)
    assert (code, text[:5]) == (451, b"4.3.0"), (code, text, smtp_process.log()[-3000:])
    status, answer, headers = api_submit(web_process, private_postgres, body)
    assert status == 503, (status, answer, web_process.log()[-3000:])
    assert answer["error"] == "unavailable" and "nothing was accepted" in answer["message"]
    assert headers.get("Retry-After") == "30"
    assert counts(private_postgres) == dict.fromkeys(TABLES, 0)
    assert "No space left on device" in private_postgres.pg.log.read_text(errors="replace")


def test_after_the_disk_has_room_again_the_same_message_is_accepted(private_postgres, smtp_process, web_process):
    private_postgres.pg.sql("TRUNCATE sending_message CASCADE")
    body = noise(3_000_000)
    assert smtp_submit(smtp_process, private_postgres, body)[0] == 250
    assert api_submit(web_process, private_postgres, body)[0] == 202
    assert counts(private_postgres)["sending_recipient"] == 2


# --- oversize: refused at intake, on the suite's own database and in-process listener ----------------------


@pytest.mark.django_db(transaction=True)
def test_oversize_is_552_and_413_and_nothing_partial_is_stored(api, settings, tmp_path, domain, organization):
    from accounts.services import smtp_credential_create
    from sending.smtp.server import Listener, SmtpServer
    from tests.servers import make_self_signed

    settings.POSTWERK_MAX_MESSAGE_SIZE = 100_000
    settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY = make_self_signed(tmp_path, "smtp.example")
    credential, password = smtp_credential_create(organization=organization, name="app")
    server = SmtpServer([Listener("submission", "127.0.0.1", 0, False)]).start()
    try:
        host, port = server.bound["submission"]
        body = noise(150_000)
        raw = f"From: app@acme.example\r\nTo: jane@dest.example\r\nSubject: big\r\n\r\n{body}\r\n".encode()
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.starttls(context=client_tls())
            client.login(credential.username, password)
            with pytest.raises(smtplib.SMTPSenderRefused) as declared:  # SIZE= says it up front (RFC 1870)
                client.sendmail("app@acme.example", ["jane@dest.example"], raw)
            assert (declared.value.smtp_code, declared.value.smtp_error[:5]) == (552, b"5.3.4")
            # A client that does not declare the size: the data itself is cut off at the limit.
            client.esmtp_features.pop("size", None)
            with pytest.raises(smtplib.SMTPDataError) as streamed:
                client.sendmail("app@acme.example", ["jane@dest.example"], raw)
            assert (streamed.value.smtp_code, streamed.value.smtp_error[:5]) == (552, b"5.3.4")
    finally:
        server.stop()

    response = api.post(
        "/api/v1/messages",
        {"from": "hello@acme.example", "to": ["jane@dest.example", "joe@dest.example"], "subject": "big",
         "text": body, "tags": ["t"]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 413, response.content
    assert response.json()["error"]
    messages_events = Event.objects.exclude(message=None).count()  # the domain fixture wrote domain events
    assert (Message.objects.count(), Recipient.objects.count(), messages_events) == (0, 0, 0)
