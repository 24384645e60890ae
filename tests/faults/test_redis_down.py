"""Redis (the cache and the broker) stopped while PostgreSQL is up: the API and SMTP submission keep accepting,
because the database is what a 202 / 250 promises; what could not be published then is handed out by the sweep
once Redis is back, and delivered once."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections import Counter

import pytest

from tests.conftest import add_mx_domain
from tests.faults.conftest import Process, Provisioned
from tests.faults.services import PrivateRedis, client_tls
from tests.worker_process import Worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.faults, pytest.mark.timeout(300)]


def api_send(process: Process, provisioned: Provisioned, payload: dict, **headers: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{process.port}/api/v1/messages",
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {provisioned.api_key}", "Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback, our own server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def smtp_send(process: Process, provisioned: Provisioned, to: str, subject: str) -> tuple[int, bytes]:
    raw = f"From: app@acme.example\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello\r\n".encode()
    with smtplib.SMTP("127.0.0.1", process.port, timeout=60) as client:
        client.starttls(context=client_tls())
        client.login(provisioned.smtp_username, provisioned.smtp_password)
        try:
            client.sendmail("app@acme.example", [to], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
    return 250, b""


def test_with_redis_stopped_api_and_smtp_accept_and_the_sweep_delivers_after_it_is_back(
    private_postgres, private_redis: PrivateRedis, web_process, smtp_process, mx, zone, tmp_path
):
    pg = private_postgres.pg
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    pg.sql("TRUNCATE sending_message CASCADE")  # other fault tests share the cluster
    private_redis.stop()

    payload = {"from": "app@acme.example", "to": ["api@dest.example"], "subject": "via api", "text": "Hello"}
    status, answer = api_send(web_process, private_postgres, payload)
    assert status == 202, (status, answer, web_process.log()[-3000:])
    status, answer = api_send(
        web_process, private_postgres, {**payload, "subject": "again"}, **{"Idempotency-Key": "k1"}
    )
    assert status == 202, (status, answer, web_process.log()[-3000:])
    code, text = smtp_send(smtp_process, private_postgres, "smtp@dest.example", "via smtp")
    assert code == 250, (code, text, smtp_process.log()[-3000:])
    (rows,) = pg.sql("SELECT count(*) FROM sending_recipient WHERE state = 'queued'")
    assert rows == (3,)

    private_redis.start()
    worker = Worker(
        tmp_path,
        ("-B", "-s", str(tmp_path / "celerybeat-schedule")),
        **{**private_postgres.env, "CELERY_BROKER_URL": private_redis.url(), "POSTWERK_SWEEP_INTERVAL": "1"},
    ).start()
    try:
        delivered = lambda: pg.sql("SELECT count(*) FROM sending_recipient WHERE state = 'delivered'")[0][0]  # noqa: E731
        assert wait_until(lambda: delivered() == 3, timeout=120), worker.log()[-5000:]
    finally:
        worker.stop()
    at_sink = Counter(a for m in sink.messages for a in m.rcpt_tos)
    assert at_sink == Counter(["api@dest.example", "api@dest.example", "smtp@dest.example"])
