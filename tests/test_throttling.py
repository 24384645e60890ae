"""Per-destination throttling and back-off, against the loopback DNS server and aiosmtpd MX hosts; the burst runs
through two real Celery worker processes to show the limits hold across processes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mail.smtp_client import Reply
from sending.delivery import throttling
from sending.delivery.deliver import deliver
from sending.delivery.slots import slot_release, slot_take
from sending.models import DeliverySlot, DestinationState, Event, EventType, Recipient, RecipientState, ThrottleRule
from tests.conftest import add_mx_domain
from tests.worker_process import Worker, wait_until

DEST = "dest.example"


@pytest.fixture(autouse=True)
def fresh_rules(settings):
    settings.POSTWERK_THROTTLE_RULES = []
    settings.POSTWERK_THROTTLE_CACHE_SECONDS = 0  # every test step sees the rules and back-offs it just wrote
    throttling.rules_forget()
    yield
    throttling.rules_forget()


def send_many(api, count: int, domain: str = DEST, prefix: str = "user") -> list[str]:
    messages = [
        {"from": "hello@acme.example", "to": [f"{prefix}{i}@{domain}"], "subject": f"#{i}", "text": "Hello"}
        for i in range(count)
    ]
    response = api.post("/api/v1/messages/batch", {"messages": messages}, format="json")
    assert response.status_code == 200, response.content
    assert all(result["status"] == 202 for result in response.json()["results"]), response.content
    return [str(pk) for pk in Recipient.objects.filter(domain=domain).values_list("id", flat=True)]


def delivered() -> int:
    return Recipient.objects.filter(state=RecipientState.DELIVERED).count()


def rule(pattern: str = DEST, match: str = "domain", **limits: int) -> ThrottleRule:
    return ThrottleRule.objects.create(pattern=pattern, match=match, **limits)


# --- rules ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_most_specific_rule_wins_and_database_rules_replace_builtins(settings):
    settings.POSTWERK_THROTTLE_RULES = [
        {"pattern": "gmail.com", "match": "domain", "max_connections": 10},
        {"pattern": "*.google.com", "match": "mx", "max_connections": 10},
        {"pattern": "yahoo.com", "match": "domain", "max_connections": 5},
    ]
    rule("gmail.com", max_connections=3)  # replaces the built-in one
    rule("yahoo.com", max_connections=5, enabled=False)  # switches it off
    rule("*.corp.example", max_messages_per_minute=100)
    throttling.rules_forget()

    gmail = throttling.throttle_for("gmail.com", ["gmail-smtp-in.l.google.com"]).rule
    assert gmail is not None and gmail.max_connections == 3 and gmail.key == "gmail.com"
    hosted = throttling.throttle_for("workspace.example", ["aspmx.l.google.com"]).rule
    assert hosted is not None and hosted.key == "mx:*.google.com"
    assert throttling.throttle_for("yahoo.com", ["mta5.am0.yahoodns.net"]).rule is None
    assert throttling.throttle_for("mail.corp.example", ["mx.elsewhere.example"]).rule.max_messages_per_minute == 100
    # Unthrottled: decided from the cached rule set alone.
    assert throttling.throttle_for("other.example", ["mx.other.example"]).limited is False


@pytest.mark.parametrize(
    ("reply", "backs_off"),
    [
        (Reply(421, "4.7.0", "Too many messages from your IP"), True),
        (Reply(421, "", "Service not available"), True),
        (Reply(451, "4.7.500", "Server busy"), True),
        (Reply(450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that prevents"), True),
        (Reply(421, "4.4.1", "mx1.dest.example [127.0.0.2]: (421, b'4.7.0 Too many connections')"), True),
        (Reply(451, "4.3.0", "Try again later"), False),
        (Reply(451, "4.7.1", "Greylisted, please try again in 5 minutes"), False),
        (Reply(421, "4.4.1", "mx1.dest.example [127.0.0.2]: [Errno 111] Connection refused"), False),
        (Reply(421, "4.4.2", "connection to mx1.dest.example lost: timed out"), False),
        (Reply(550, "5.7.1", "rate limited"), False),
    ],
)
def test_which_replies_back_off_the_destination(reply, backs_off):
    assert throttling.asks_backoff(reply) is backs_off


# --- limits, in this process ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_per_window_limit_leaves_the_rest_queued_without_an_attempt(api, zone, mx, settings):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    rule(max_messages_per_minute=5)
    ids = send_many(api, 8)

    assert deliver(ids, domain=DEST) == 5

    assert len(sink.messages) == 5
    waiting = Recipient.objects.filter(state=RecipientState.QUEUED)
    assert waiting.count() == 3
    window_start = DestinationState.objects.get(key=DEST).window_start
    for r in waiting:
        assert r.attempts == 0
        assert r.next_attempt_at == window_start + timedelta(seconds=settings.POSTWERK_THROTTLE_WINDOW)
    assert not Event.objects.filter(recipient__in=waiting).exclude(type=EventType.QUEUED).exists()
    # Asked again within the window: nothing more goes.
    assert deliver([str(r.pk) for r in waiting], domain=DEST) == 0
    assert len(sink.messages) == 5


@pytest.mark.django_db
def test_no_connection_while_every_slot_is_held_elsewhere(api, zone, mx, settings):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    rule(max_connections=1)
    ids = send_many(api, 3)
    elsewhere = slot_take(DEST, 1)  # another process's session
    assert elsewhere is not None

    before = timezone.now()
    assert deliver(ids, domain=DEST) == 0
    assert sink.connections == 0
    retry = Recipient.objects.values_list("next_attempt_at", flat=True)
    assert all(at >= before + timedelta(seconds=settings.POSTWERK_THROTTLE_SLOT_RETRY) for at in retry)

    slot_release(elsewhere)
    assert deliver(ids, domain=DEST) == 3
    assert DeliverySlot.objects.get(key=DEST).holder == ""  # freed when the session closed


@pytest.mark.django_db
def test_a_dead_holders_slot_is_reclaimed_when_its_lease_runs_out(api, zone, mx):
    mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    rule(max_connections=1)
    ids = send_many(api, 2)
    assert slot_take(DEST, 1) is not None  # taken, and its holder then died without releasing it
    DeliverySlot.objects.filter(key=DEST).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert deliver(ids, domain=DEST) == 2


@pytest.mark.django_db
def test_messages_per_connection_opens_a_new_session_after_n(api, zone, mx):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    rule(max_messages_per_connection=3, max_connections=1)
    ids = send_many(api, 7)

    assert deliver(ids, domain=DEST) == 7

    per_session: dict[int, int] = {}
    for m in sink.messages:
        per_session[m.session_id] = per_session.get(m.session_id, 0) + 1
    assert sorted(per_session.values()) == [1, 3, 3]
    assert sink.max_active == 1


@pytest.mark.django_db
def test_421_backs_off_every_domain_behind_the_same_mx_rule_and_grows_on_repeat(api, zone, mx, settings):
    settings.POSTWERK_THROTTLE_BACKOFF = 1.0
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    zone.add("other.example", "MX", f"10 mx1.{DEST}.")  # hosted on the same MX
    rule("*.dest.example", match="mx", max_messages_per_minute=1000)
    ids = send_many(api, 4)
    other = send_many(api, 2, domain="other.example")
    sink.data_reply = "421 4.7.0 Too many messages, slow down"

    assert deliver(ids, domain=DEST) == 1  # the first message met the 421; the other three were never tried

    refused = Recipient.objects.get(last_code=421)
    assert refused.state == RecipientState.DEFERRED and refused.attempts == 1
    state = DestinationState.objects.get(key=DEST)
    assert state.backoff_until is not None and "421 4.7.0" in state.backoff_reason
    assert DestinationState.objects.get(key="mx:*.dest.example").backoff_until == state.backoff_until
    held = Recipient.objects.filter(domain=DEST, state=RecipientState.QUEUED)
    assert held.count() == 3
    assert all(r.attempts == 0 and r.next_attempt_at == state.backoff_until for r in held)

    # While backed off nobody connects, to this domain or to another one behind the same MX.
    sink.data_reply = None
    connections = sink.connections
    assert deliver(ids, domain=DEST) == 0
    assert deliver(other, domain="other.example") == 0
    assert sink.connections == connections

    assert wait_until(lambda: timezone.now() > state.backoff_until, timeout=10)
    assert deliver([str(r.pk) for r in held], domain=DEST) == 3
    assert deliver(other, domain="other.example") == 2

    # Asked again soon after: twice as long.
    sink.data_reply = "421 4.7.0 Too many messages, slow down"
    more = send_many(api, 1, prefix="again")
    deliver(more[-1:], domain=DEST)
    again = DestinationState.objects.get(key=DEST)
    assert again.backoff_until - again.updated_at == timedelta(seconds=2)


@pytest.mark.django_db
def test_unthrottled_destinations_ask_nothing_of_the_throttle_tables(
    api, zone, mx, settings, django_assert_max_num_queries
):
    settings.POSTWERK_THROTTLE_CACHE_SECONDS = 60
    mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    ids = send_many(api, 1)
    throttling.throttle_for(DEST, [])  # warm this process's rule cache, as a running worker has it
    with django_assert_max_num_queries(50) as captured:
        assert deliver(ids, domain=DEST) == 1
    throttle_tables = ("deliveryslot", "destinationstate", "throttlerule")
    assert not [q["sql"] for q in captured.captured_queries if any(t in q["sql"] for t in throttle_tables)]


# --- across processes -------------------------------------------------------------------------------------

WINDOW = 1.0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)  # two worker processes' start and the burst, on a machine that may be busy
def test_burst_of_300_through_two_worker_processes_keeps_every_limit(api, zone, mx, tmp_path, settings):
    """2 connections, 25 messages per connection and 60 per window, with two worker processes of two threads each:
    four would-be senders for two slots."""
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    rule(max_connections=2, max_messages_per_connection=25, max_messages_per_minute=60)
    settings.POSTWERK_DELIVERY_BATCH = 10  # 30 tasks for the burst, and small claims that interleave
    env = {
        "POSTWERK_THROTTLE_WINDOW": str(WINDOW),
        "POSTWERK_THROTTLE_SLOT_RETRY": "0.5",
        "POSTWERK_DELIVERY_BATCH": "10",
        "POSTWERK_THROTTLE_RULES": "[]",
    }
    workers = [Worker(tmp_path, extra_args=("-P", "threads", "-c", "2"), **env).start() for _ in range(2)]
    logs = lambda: "\n".join(w.log()[-3000:] for w in workers)  # noqa: E731
    try:
        # Both consume before the burst is published, so both compete for the slots; how the burst then splits
        # between them is the broker's business (one task drains its destination's queue), not a promise.
        assert wait_until(lambda: all("ready." in w.log() for w in workers), timeout=120), logs()
        send_many(api, 300)
        assert wait_until(lambda: delivered() == 300, timeout=150), logs()
    finally:
        for w in workers:
            w.stop()

    assert len(sink.messages) == 300
    assert len({m.rcpt_tos[0] for m in sink.messages}) == 300  # each exactly once
    assert sink.max_active <= 2
    assert sink.connections >= 300 // 25
    # 60 per window: the 241st message cannot have gone before the fifth window opened.
    times = sorted(m.received_at for m in sink.messages)
    assert times[-1] - times[0] >= 3 * WINDOW
    assert not Recipient.objects.filter(attempts__gt=1).exists()  # throttled mail was never counted as a try
    assert DeliverySlot.objects.filter(key=DEST).exclude(holder="").count() == 0


def test_sink_counts_sessions_until_quit():
    # The concurrency count the burst test relies on: a session stops counting at QUIT.
    import smtplib

    from tests.servers import SmtpSink

    with SmtpSink("127.0.0.2") as sink:
        first = smtplib.SMTP(*sink.address, local_hostname="client.example")
        second = smtplib.SMTP(*sink.address, local_hostname="client.example")
        assert wait_until(lambda: sink.active == 2, timeout=5)
        first.quit()
        assert wait_until(lambda: sink.active == 1, timeout=5)
        second.quit()
        assert wait_until(lambda: sink.active == 0, timeout=5)
        assert sink.max_active == 2
