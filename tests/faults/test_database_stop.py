"""PostgreSQL (a private cluster) crashes while clients submit over SMTP to a real `manage.py smtpserver` process:
while it is down every DATA is answered 451 4.3.0, no 250 is given for a message that is not stored, and once it
is back every message that got a 250 is delivered, once."""

from __future__ import annotations

import re
import smtplib
import sys
from collections import Counter

import pytest

from tests.conftest import add_mx_domain
from tests.faults.services import PrivateRedis, client_tls
from tests.worker_process import Worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.faults, pytest.mark.timeout(300)]

BEFORE, DURING, AFTER = 10, 10, 10


def message(n: int) -> bytes:
    return (
        f"From: App <app@acme.example>\r\nTo: r{n}@dest.example\r\nSubject: m{n}\r\n"
        f"Message-ID: <fault-{n}@client.example>\r\n\r\nHello {n}\r\n"
    ).encode()


class Client:
    """One authenticated submission session, reopened when the server closes it."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.port, self.username, self.password = port, username, password
        self.smtp: smtplib.SMTP | None = None

    def submit(self, n: int) -> tuple[int, bytes]:
        """The server's final answer to message n: (250, text) when accepted."""
        try:
            if self.smtp is None:
                smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
                smtp.starttls(context=client_tls())
                smtp.login(self.username, self.password)
                self.smtp = smtp
            self.smtp.sendmail("app@acme.example", [f"r{n}@dest.example"], message(n))
            return 250, b""
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
        except smtplib.SMTPResponseException as exc:  # refused before DATA (AUTH, MAIL): nothing sent
            self.close()
            return exc.smtp_code, exc.smtp_error
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.close()
            return 0, str(exc).encode()

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.close()
            finally:
                self.smtp = None


def test_postgres_crash_during_submission_gives_451_never_250_and_loses_nothing_accepted(
    private_postgres, private_redis: PrivateRedis, smtp_process, mx, zone, tmp_path
):
    pg = private_postgres.pg
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    pg.sql("TRUNCATE sending_message CASCADE")  # other fault tests share the cluster
    client = Client(smtp_process.port, private_postgres.smtp_username, private_postgres.smtp_password)
    answers: dict[int, tuple[int, bytes]] = {}
    n = 0
    for _ in range(BEFORE):
        answers[n] = client.submit(n)
        n += 1
    pg.stop("immediate")  # a crash: no checkpoint, every connection cut
    try:
        for _ in range(DURING):
            answers[n] = client.submit(n)
            n += 1
    finally:
        pg.start()
    outage = range(BEFORE, BEFORE + DURING)
    # Recovery: connections the crash broke are found by Django's health check (CONN_HEALTH_CHECKS) before use.
    for _ in range(AFTER):
        answers[n] = client.submit(n)
        n += 1
    client.close()

    accepted = {i for i, (code, _) in answers.items() if code == 250}
    refused = {i: answer for i, answer in answers.items() if answer[0] != 250}
    assert set(range(BEFORE)) <= accepted, answers
    assert not accepted & set(outage), answers
    for i in outage:
        code, text = answers[i]
        assert code == 451 and text.startswith(b"4.3.0"), (i, code, text, smtp_process.log()[-3000:])
    after = {i: answers[i] for i in range(BEFORE + DURING, n) if i not in accepted}
    assert not after, f"refused once PostgreSQL was back: {after}\n{smtp_process.log()[-3000:]}"

    stored = {
        int(re.search(r"fault-(\d+)@", mid).group(1)) for (mid,) in pg.sql("SELECT message_id FROM sending_message")
    }
    assert stored == accepted, (sorted(stored), sorted(accepted), refused)
    (rows,) = pg.sql("SELECT count(*) FROM sending_recipient")
    assert rows == (len(accepted),)

    worker = Worker(
        tmp_path,
        ("-B", "-s", str(tmp_path / "celerybeat-schedule")),
        **{**private_postgres.env, "CELERY_BROKER_URL": private_redis.url(), "POSTWERK_SWEEP_INTERVAL": "1"},
    ).start()
    try:
        delivered = lambda: pg.sql("SELECT count(*) FROM sending_recipient WHERE state = 'delivered'")[0][0]  # noqa: E731
        assert wait_until(lambda: delivered() == len(accepted), timeout=120), worker.log()[-5000:]
    finally:
        worker.stop()
    at_sink = Counter(int(re.search(rb"fault-(\d+)@", m.data).group(1)) for m in sink.messages)
    assert set(at_sink) == accepted and set(at_sink.values()) == {1}, at_sink
    print(f"{len(accepted)} accepted, {len(refused)} refused (451 4.3.0) of {n}; python {sys.version_info[:2]}")
