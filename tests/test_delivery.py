"""The delivery stage against a real DNS server and real recipient MX hosts on loopback."""

from __future__ import annotations

from datetime import timedelta

import dkim
import dns.nameserver
import dns.resolver
import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from sending.delivery.sweep import sweep
from sending.models import DkimKey, Event, EventType, Recipient, RecipientState
from sending.return_path import recipient_id_from_return_path
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim
from tests.servers import make_self_signed

pytestmark = pytest.mark.django_db


def send(api, to, **extra):
    body = {"from": "Acme <hello@acme.example>", "to": to, "subject": "Hi", "text": "Hello there\n"}
    body.update(extra)
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def states(message_id=None):
    qs = Recipient.objects.all() if message_id is None else Recipient.objects.filter(message_id=message_id)
    return {r.address: r.state for r in qs}


def dns_txt(zone):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(zone.host, zone.port)]

    def lookup(name, timeout=5):
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    return lookup


def test_delivered_and_dkim_signature_verifies_against_dns(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    publish_dkim(zone, domain)
    sent = send(api, ["jane@dest.example"])

    assert deliver_queued() == 1

    assert len(sink.messages) == 1
    received = sink.messages[0]
    assert received.rcpt_tos == ["jane@dest.example"]
    # The VERP return path names this one delivery, on the domain's own return-path host (its CNAME is published).
    recipient = Recipient.objects.get()
    assert recipient_id_from_return_path(received.mail_from) == recipient.pk
    assert received.mail_from.endswith("@pm-bounces.acme.example")
    assert str(recipient.message_id) == sent["id"]
    assert received.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(received.data, dnsfunc=dns_txt(zone))
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DELIVERED
    assert (recipient.last_code, recipient.mx_host, recipient.tls) == (250, "mx1.dest.example", False)
    assert recipient.delivered_at is not None
    types = list(Event.objects.filter(message_id=sent["id"]).order_by("id").values_list("type", flat=True))
    assert types == [EventType.QUEUED, EventType.SENT, EventType.DELIVERED]


def test_recipients_of_one_domain_share_a_connection_each_with_its_own_return_path(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["a@dest.example", "b@dest.example"], cc=["c@dest.example"])
    send(api, ["d@dest.example"])

    assert deliver_queued() == 4

    # VERP: one transaction per recipient, so a bounce names exactly one delivery; one connection for all.
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == [
        "a@dest.example",
        "b@dest.example",
        "c@dest.example",
        "d@dest.example",
    ]
    by_address = {r.address: r.pk for r in Recipient.objects.all()}
    assert all(recipient_id_from_return_path(m.mail_from) == by_address[m.rcpt_tos[0]] for m in sink.messages)
    assert sink.connections == 1
    assert {m.session_id for m in sink.messages} == {sink.messages[0].session_id}


def test_mx_lookup_is_cached(api, zone, mx, domain):
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["a@dest.example"])
    deliver_queued()
    send(api, ["b@dest.example"])
    deliver_queued()
    assert [q for q in zone.queries if q[:2] == ("dest.example", "MX")] == [("dest.example", "MX", "udp")]


def test_temporary_failure_is_deferred_then_delivered_on_retry(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    sink.tempfail_next = 1
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])

    deliver_queued()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DEFERRED
    assert (recipient.last_code, recipient.last_enhanced) == (451, "4.3.0")
    assert recipient.next_attempt_at > timezone.now() + timedelta(seconds=30)

    # Not due yet: the sweep leaves it alone.
    assert sweep().enqueued == 0
    Recipient.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert sweep().enqueued == 1
    deliver_queued()

    recipient.refresh_from_db()
    assert recipient.state == RecipientState.DELIVERED
    assert recipient.attempts == 2
    assert len(sink.messages) == 1
    assert Event.objects.filter(type=EventType.DEFERRED).count() == 1


def test_permanent_rejection_bounces_with_the_reply_kept(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"gone@dest.example": "550 5.1.1 <gone@dest.example>: no such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sent = send(api, ["gone@dest.example", "here@dest.example"])

    deliver_queued()

    assert states() == {"gone@dest.example": "bounced", "here@dest.example": "delivered"}
    gone = Recipient.objects.get(address="gone@dest.example")
    assert (gone.last_code, gone.last_enhanced) == (550, "5.1.1")
    assert "no such user" in gone.last_text
    assert sink.messages[0].rcpt_tos == ["here@dest.example"]
    bounce = Event.objects.get(type=EventType.BOUNCED, message_id=sent["id"])
    assert bounce.details["smtp"]["enhanced"] == "5.1.1"


def test_a_finished_recipient_has_no_next_attempt(api, zone, mx, domain):
    """Delivered or bounced, no attempt is coming: neither the row nor the API may show one."""
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"gone@dest.example": "550 5.1.1 <gone@dest.example>: no such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sent = send(api, ["gone@dest.example", "here@dest.example"])

    deliver_queued()

    rows = {r.address: (r.state, r.next_attempt_at) for r in Recipient.objects.all()}
    assert rows == {"gone@dest.example": ("bounced", None), "here@dest.example": ("delivered", None)}
    shown = api.get(f"/api/v1/messages/{sent['id']}").json()["recipients"]
    assert {r["address"]: (r["state"], r["next_attempt_at"]) for r in shown} == {
        "gone@dest.example": ("bounced", None),
        "here@dest.example": ("delivered", None),
    }


def test_rejected_data_bounces_every_recipient_of_the_transaction(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    sink.data_reply = "554 5.7.1 Message rejected as spam"
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["a@dest.example", "b@dest.example"])
    deliver_queued()
    assert states() == {"a@dest.example": "bounced", "b@dest.example": "bounced"}


def test_first_mx_down_second_accepts(api, zone, mx, domain):
    sink = mx("127.0.0.3")
    add_mx_domain(zone, "dest.example", "127.0.0.5", "127.0.0.3")  # nothing listens on .5
    send(api, ["jane@dest.example"])
    deliver_queued()
    assert len(sink.messages) == 1
    assert Recipient.objects.get().mx_host == "mx2.dest.example"


def test_all_mx_down_is_deferred(api, zone, domain):
    add_mx_domain(zone, "dest.example", "127.0.0.5")
    send(api, ["jane@dest.example"])
    deliver_queued()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DEFERRED
    assert recipient.last_enhanced == "4.4.1"


def test_null_mx_bounces_at_once(api, zone, domain):
    zone.add("nomail.example", "MX", "0 .")
    send(api, ["x@nomail.example"])
    deliver_queued()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.BOUNCED
    assert (recipient.last_code, recipient.last_enhanced) == (556, "5.1.10")


def test_nxdomain_bounces(api, zone, domain):
    send(api, ["x@missing.example"])
    deliver_queued()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.BOUNCED
    assert recipient.last_enhanced == "5.1.2"


def test_no_mx_falls_back_to_the_address_record(api, zone, mx, domain):
    sink = mx("127.0.0.4")
    zone.add("plain.example", "A", "127.0.0.4")
    send(api, ["x@plain.example"])
    deliver_queued()
    assert len(sink.messages) == 1
    assert Recipient.objects.get().state == RecipientState.DELIVERED


def test_dns_failure_defers(api, zone, domain):
    zone.add("flaky.example", "MX", "10 mx.flaky.example.")
    zone.servfail("flaky.example")
    send(api, ["x@flaky.example"])
    deliver_queued()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DEFERRED
    assert recipient.last_enhanced == "4.4.3"


def test_deferral_past_the_age_limit_bounces_as_expired(api, zone, domain, settings):
    settings.POSTWERK_MAX_DELIVERY_AGE = 30
    add_mx_domain(zone, "dest.example", "127.0.0.5")
    send(api, ["jane@dest.example"])
    deliver_queued()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.BOUNCED
    assert Event.objects.get(type=EventType.BOUNCED).details["reason"] == "expired"


def test_starttls_is_used_when_offered(api, zone, mx, domain, tmp_path):
    sink = mx("127.0.0.2", tls_cert=make_self_signed(tmp_path, "mx1.dest.example"))
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])
    deliver_queued()
    assert sink.messages[0].tls is True
    assert Recipient.objects.get().tls is True


def test_internationalised_recipient_travels_with_smtputf8(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jösé@dest.example"])
    deliver_queued()
    assert sink.messages[0].smtputf8 is True
    assert sink.messages[0].rcpt_tos == ["jösé@dest.example"]


def test_worker_that_died_mid_delivery_is_rescued_by_the_sweep_once(api, zone, mx, domain, settings):
    from sending.delivery.deliver import claim, deliver

    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])
    ids = [str(pk) for pk in Recipient.objects.values_list("id", flat=True)]
    assert claim(ids)  # a worker claimed it, then died before recording anything
    assert deliver(ids) == 0  # a duplicate task finds nothing left to claim

    settings.POSTWERK_SENDING_TIMEOUT = 60
    assert sweep().rescued == 0  # not stuck long enough yet
    Recipient.objects.update(sending_since=timezone.now() - timedelta(seconds=61))
    report = sweep()
    assert (report.rescued, report.enqueued) == (1, 1)
    deliver(ids)
    deliver(ids)
    assert len(sink.messages) == 1
    assert Recipient.objects.get().state == RecipientState.DELIVERED


def test_the_sweep_leaves_a_live_workers_claim_alone_however_old_and_requeues_it_once_the_lease_ran_out(
    api, zone, mx, domain, settings
):
    from sending.delivery.claiming import claim
    from sending.delivery.worker_leases import holding
    from sending.models import WorkerLease

    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])
    ids = [str(pk) for pk in Recipient.objects.values_list("id", flat=True)]
    with holding() as lease:
        assert claim(ids)
    # A slow receiver: the claim is an hour old, past any timeout, but its worker's lease is live.
    settings.POSTWERK_SENDING_TIMEOUT = 60
    Recipient.objects.update(sending_since=timezone.now() - timedelta(hours=1))
    assert Recipient.objects.get().claim_token == lease
    assert sweep().rescued == 0
    assert Recipient.objects.get().state == RecipientState.SENDING

    # The worker stopped renewing (killed): once its lease has run out the next sweep re-queues the recipient.
    WorkerLease.objects.filter(worker=lease).update(expires_at=timezone.now() - timedelta(seconds=1))
    report = sweep()
    assert (report.rescued, report.enqueued) == (1, 1)
    recipient = Recipient.objects.get()
    assert (recipient.state, recipient.claim_token, recipient.attempts) == (RecipientState.QUEUED, None, 1)


def test_a_delivery_that_fails_outside_the_smtp_session_releases_its_lease_for_the_sweep(
    api, zone, mx, domain, monkeypatch
):
    """The database went away while an outcome was being recorded: what the delivery claimed must not wait for this
    process to go idle. Its lease is released, and the next sweep re-queues the recipients."""
    from sending.delivery import deliver as delivery
    from sending.models import WorkerLease

    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])

    def unavailable(outcomes):
        raise RuntimeError("the database is unavailable")

    monkeypatch.setattr(delivery, "record_outcomes", unavailable)
    with pytest.raises(RuntimeError):
        deliver_queued()
    monkeypatch.undo()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.SENDING
    assert WorkerLease.objects.get(worker=recipient.claim_token).holder == ""  # released
    assert sweep().rescued == 1
    assert deliver_queued() == 1
    assert len(sink.messages) == 2  # the first copy reached the MX before the outcome could be written
    assert Recipient.objects.get().state == RecipientState.DELIVERED


def test_each_outcome_is_recorded_as_soon_as_its_smtp_transaction_ends(api, zone, mx, domain, monkeypatch):
    """A worker that dies mid-batch re-sends at most the transaction in flight: before each transaction starts,
    every earlier one of the batch is already recorded."""
    from mail.smtp_client import SmtpSession

    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["a@dest.example", "b@dest.example"])
    send(api, ["c@dest.example"])
    seen: list[dict[str, str]] = []
    real_send = SmtpSession.send

    def send_and_look(self, **kwargs):
        seen.append(states())  # what the database says as this transaction starts
        return real_send(self, **kwargs)

    monkeypatch.setattr(SmtpSession, "send", send_and_look)
    assert deliver_queued() == 3

    first, second, third = (sorted(s.values()) for s in seen)
    assert first == ["sending", "sending", "sending"]
    assert second == ["delivered", "sending", "sending"]
    assert third == ["delivered", "delivered", "sending"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="one statement per outcome is PostgreSQL's path")
def test_each_outcome_is_one_statement_committed_without_waiting_for_the_flush(api, zone, mx, domain):
    """The per-transaction write is one round trip: the recipient's UPDATE and its events' INSERT in one
    statement, its own transaction, whose commit does not wait for the disk flush; the connection's later
    transactions wait for it again."""
    from django.test.utils import CaptureQueriesContext

    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["a@dest.example", "b@dest.example"])
    send(api, ["c@dest.example"])

    with CaptureQueriesContext(connection) as queries:
        assert deliver_queued() == 3

    outcome_writes = [q["sql"] for q in queries if '"last_code" = v.' in q["sql"]]
    assert len(outcome_writes) == 3, outcome_writes
    for sql in outcome_writes:
        assert 'UPDATE "sending_recipient"' in sql and 'INSERT INTO "sending_event"' in sql, sql
        assert "set_config('synchronous_commit', 'off', true)" in sql, sql
    assert set(states().values()) == {"delivered"}
    assert sorted(Event.objects.filter(type=EventType.DELIVERED).values_list("recipient__address", flat=True)) == [
        "a@dest.example",
        "b@dest.example",
        "c@dest.example",
    ]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)


def test_server_without_pipelining_gets_one_command_at_a_time(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    sink.pipelining = False
    sink.rcpt_replies = {"gone@dest.example": "550 5.1.1 <gone@dest.example>: no such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["gone@dest.example", "here@dest.example", "there@dest.example"])

    deliver_queued()

    assert states() == {
        "gone@dest.example": "bounced",
        "here@dest.example": "delivered",
        "there@dest.example": "delivered",
    }
    assert sink.connections == 1


def test_a_task_takes_other_queued_mail_for_its_destination_along_on_its_connection(api, zone, mx, domain):
    from sending.delivery.deliver import deliver

    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    ids = [send(api, [f"u{i}@dest.example"])["recipients"][0]["id"] for i in range(3)]

    assert deliver([ids[0]]) == 3  # one task, all three: as SMTP submissions arrive one message per task
    assert deliver([ids[1]]) == 0 and deliver([ids[2]]) == 0  # their own tasks find nothing left
    assert sink.connections == 1 and len(sink.messages) == 3
    assert set(states().values()) == {"delivered"}


def unverified_sender(organization) -> APIClient:
    """An API client for acme.example as the README's local trial has it: created, its DNS never checked."""
    from accounts.services import api_key_create
    from sending.delivery import signing_keys
    from sending.domains.service import domain_get_or_create

    domain, _ = domain_get_or_create(organization=organization, name="acme.example")
    assert domain.verified_at is None
    assert set(domain.dkim_keys.values_list("state", flat=True)) == {DkimKey.State.PENDING}
    signing_keys.forget()
    _, secret = api_key_create(organization=organization, name="trial")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_local_trial_without_verification_delivers_signed_with_the_pending_key(organization, zone, mx, settings):
    settings.POSTWERK_REQUIRE_VERIFIED_DOMAINS = False
    api = unverified_sender(organization)
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sent = send(api, ["jane@dest.example"])

    assert deliver_queued() == 1

    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DELIVERED, recipient.last_text
    (received,) = sink.messages
    key = DkimKey.objects.get(domain__name="acme.example")
    assert received.data.startswith(b"DKIM-Signature:")
    signature = received.data.split(b"\r\n\r\n", 1)[0]
    assert b"d=acme.example;" in signature and f"s={key.selector};".encode() in signature
    publish_dkim(zone, key.domain)  # the record the README told the owner to publish: the signature verifies
    assert dkim.verify(received.data, dnsfunc=dns_txt(zone))
    assert str(recipient.message_id) == sent["id"]


def test_a_domain_with_no_key_at_all_fails_with_the_reason_in_the_event(organization, zone, mx, settings, caplog):
    settings.POSTWERK_REQUIRE_VERIFIED_DOMAINS = False
    api = unverified_sender(organization)
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    DkimKey.objects.filter(domain__name="acme.example").delete()
    send(api, ["jane@dest.example"])

    with caplog.at_level("WARNING", logger="sending.delivery.deliver"):
        assert deliver_queued() == 1

    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.FAILED
    assert sink.messages == []
    failed = Event.objects.get(recipient=recipient, type=EventType.FAILED)
    assert failed.details["reason"] == "no_signing_key"
    assert failed.details["diagnostic"].startswith("message could not be signed: acme.example has no DKIM key")
    logged = [r for r in caplog.records if r.name == "sending.delivery.deliver"]
    assert len(logged) == 1 and logged[0].exc_info is None and "no DKIM key" in logged[0].getMessage()
