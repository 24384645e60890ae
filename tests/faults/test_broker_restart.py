"""The broker (a private Redis, without persistence) stopped and started again while 1,000 messages are queued and
being delivered by two real workers: every queued task in it is lost, the database still knows what is left, and
the sweep hands it out again. Every message ends delivered, none twice at the sinks."""

from __future__ import annotations

from collections import Counter

import pytest

from sending.models import Recipient, RecipientState
from tests.conftest import add_mx_domain
from tests.faults.services import PrivateRedis, publishing_to
from tests.worker_process import Worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.faults, pytest.mark.timeout(420)]

TOTAL = 1000
DESTINATIONS = {f"d{n}.example": f"127.0.0.{n + 2}" for n in range(4)}
LEASE = 5  # seconds before the sweep re-enqueues a recipient whose task the broker lost


def addresses() -> list[str]:
    domains = sorted(DESTINATIONS)
    return [f"r{i}@{domains[i % len(domains)]}" for i in range(TOTAL)]


def delivered_count() -> int:
    return Recipient.objects.filter(state=RecipientState.DELIVERED).count()


def undelivered() -> str:
    """What is left, for a failure message: a deferral or a claim left `sending` says why."""
    left = Recipient.objects.exclude(state=RecipientState.DELIVERED)
    return str(Counter((r.state, r.last_code, r.last_text[:80]) for r in left))


def test_redis_stopped_and_restarted_mid_delivery_delivers_all_1000_once(api, zone, mx, tmp_path, settings):
    settings.POSTWERK_ENQUEUE_LEASE = LEASE
    sinks = []
    for domain, host in DESTINATIONS.items():
        sinks.append(mx(host))
        add_mx_domain(zone, domain, host)
    redis = PrivateRedis(tmp_path).start()
    env = {
        "CELERY_BROKER_URL": redis.url(),
        "POSTWERK_ENQUEUE_LEASE": str(LEASE),
        "POSTWERK_SWEEP_INTERVAL": "1",
        "POSTWERK_DELIVERY_DRAIN": "100",  # smaller tasks, so many are still on the broker when it goes away
        # The production timeouts, not the tests' 3 s: on a busy machine a sink's banner or the DNS server's answer
        # can take longer than that, and the deferral (retried after 1 and then 5 minutes) is not what this tests.
        "POSTWERK_SMTP_CONNECT_TIMEOUT": "30",
        "POSTWERK_DNS_TIMEOUT": "30",
    }
    workers = [
        Worker(tmp_path, ("-B", "-s", str(tmp_path / "celerybeat-schedule")), **env).start(),
        Worker(tmp_path, **env).start(),
    ]
    try:
        with publishing_to(redis.url()):
            to = addresses()
            for start in range(0, TOTAL, 500):
                batch = [
                    {"from": "hello@acme.example", "to": [a], "subject": f"m{start + i}", "text": "Hello"}
                    for i, a in enumerate(to[start : start + 500])
                ]
                response = api.post("/api/v1/messages/batch", {"messages": batch}, format="json")
                assert response.status_code == 200, response.content
                assert {r["status"] for r in response.json()["results"]} == {202}

        logs = lambda: "\n".join(w.log()[-3000:] for w in workers)  # noqa: E731
        assert wait_until(lambda: delivered_count() >= 100, timeout=120), logs()
        redis.stop()  # no persistence: every task still queued in it is gone
        at_stop = delivered_count()
        assert at_stop < TOTAL, "everything was delivered before the broker stopped; the test proves nothing"
        # The broker is seen gone. Beat (in the first worker) says so in one of two ways, depending on where it was:
        # a sweep it could not publish, or its own connection lost; the consumers say they cannot connect.
        signs = ("Couldn't apply scheduled task sweep-recipients", "beat: Connection error", "consumer: Cannot connect")
        assert wait_until(lambda: any(sign in w.log() for w in workers for sign in signs), timeout=120), logs()
        redis.start()
        assert wait_until(lambda: delivered_count() == TOTAL, timeout=240), undelivered() + logs()
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()

    at_sinks = Counter(a for sink in sinks for m in sink.messages for a in m.rcpt_tos)
    assert sum(at_sinks.values()) == TOTAL
    assert sorted(at_sinks) == sorted(addresses())
    assert set(at_sinks.values()) == {1}
    assert not Recipient.objects.exclude(state=RecipientState.DELIVERED).exists()
    print(f"delivered before the broker stopped: {at_stop}, after it came back: {TOTAL - at_stop}")
