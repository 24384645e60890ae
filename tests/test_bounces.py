"""Bounces, complaints and suppressions end to end: real deliveries to a loopback MX, DSNs and ARF reports sent
with smtplib to the real inbound listener, then processed as the Celery task would."""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage

import pytest

from accounts.services import api_key_create, organization_get_or_create, smtp_credential_create
from sending.feedback.bounce_processing import inbound_process
from sending.intake.smtp_intake import smtp_message_submit
from sending.models import Event, EventType, InboundMessage, Recipient, RecipientState, Suppression
from sending.return_path import return_path
from sending.smtp.server import Listener, SmtpServer
from tests.conftest import add_mx_domain, deliver_queued, verified_domain
from tests.servers import make_self_signed
from tests.test_delivery import send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inbound(settings, tmp_path):
    cert, key = make_self_signed(tmp_path, "mx.postwerk.example")
    settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY = cert, key
    server = SmtpServer([Listener("inbound", "127.0.0.1", 0, False, "inbound")]).start()
    yield server.bound["inbound"]
    server.stop()


@pytest.fixture
def delivered(api, zone, mx, domain):
    """One message delivered to jane@dest.example; returns (recipient, the VERP return path it went out with)."""
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])
    deliver_queued()
    recipient = Recipient.objects.get(address="jane@dest.example")
    assert recipient.state == RecipientState.DELIVERED
    return recipient, sink.messages[0].mail_from


def dsn(final_recipient: str, status: str, diagnostic: str, *, action: str = "failed") -> bytes:
    """An RFC 3464 report as Postfix writes it."""
    return f"""From: MAILER-DAEMON@mx.dest.example (Mail Delivery System)
To: bounce@postwerk.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.dest.example

Final-Recipient: rfc822; {final_recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; store.dest.example
Diagnostic-Code: smtp; {diagnostic}

--BOUNDARY
Content-Type: text/rfc822-headers

From: hello@acme.example
To: {final_recipient}
Subject: Hi

--BOUNDARY--
""".replace("\n", "\r\n").encode()


def arf(original_rcpt: str, return_path_address: str) -> bytes:
    """An RFC 5965 feedback report as large mailbox providers send them."""
    return f"""From: feedback@fbl.dest.example
To: fbl@bounces.postwerk.example
Subject: Email Feedback Report for IP 127.0.0.1
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="FBL"

--FBL
Content-Type: text/plain

This is an email abuse report for an email message received from IP 127.0.0.1.

--FBL
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: DestFBL/1.0
Version: 1
Original-Mail-From: <{return_path_address}>
Original-Rcpt-To: <{original_rcpt}>
Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0000
Source-IP: 127.0.0.1

--FBL
Content-Type: message/rfc822

Return-Path: <{return_path_address}>
From: hello@acme.example
To: {original_rcpt}
Subject: Hi

Hello there
--FBL--
""".replace("\n", "\r\n").encode()


def deliver_report(address: tuple[str, int], rcpt: str, raw: bytes, mail_from: str = "") -> InboundMessage:
    with smtplib.SMTP(*address, timeout=10) as client:
        client.ehlo("mx.dest.example")
        code, reply = client.mail(mail_from)
        assert code == 250
        code, reply = client.rcpt(rcpt)
        assert code == 250, reply
        code, reply = client.data(raw)
        assert code == 250 and reply.startswith(b"2.0.0 Ok: queued as"), reply
    inbound = InboundMessage.objects.get(pk=reply.decode().rsplit(" ", 1)[1])
    return inbound


def process(inbound: InboundMessage) -> InboundMessage:
    inbound_process(inbound.pk)
    inbound.refresh_from_db()
    return inbound


def test_async_dsn_bounces_the_delivery_suppresses_and_the_next_send_is_suppressed(api, inbound, delivered):
    recipient, verp = delivered
    assert verp.endswith("@pm-bounces.acme.example")
    report = dsn(
        "jane@dest.example", "5.1.1", "550 5.1.1 <jane@dest.example>: Recipient address rejected: User unknown"
    )
    stored = deliver_report(inbound, verp, report)
    assert stored.state == InboundMessage.State.RECEIVED  # stored raw before anything parses it

    stored = process(stored)
    assert stored.state == InboundMessage.State.PROCESSED and stored.type == "bounce"
    recipient.refresh_from_db()
    assert recipient.state == RecipientState.BOUNCED
    event = Event.objects.get(recipient=recipient, type=EventType.BOUNCED)
    assert event.details | {"diagnostic": ""} == event.details | {
        "kind": "hard",
        "reason": "user_unknown",
        "status": "5.1.1",
        "source": "dsn",
        "diagnostic": "",
    }
    suppression = Suppression.objects.get(address="jane@dest.example")
    assert suppression.reason == "hard_bounce" and suppression.source_message_id == recipient.message_id

    body = send(api, ["jane@dest.example", "joe@dest.example"], report_suppressed=True)
    statuses = {r["address"]: r for r in body["recipients"]}
    assert statuses["jane@dest.example"]["status"] == "suppressed"
    assert statuses["jane@dest.example"]["suppression"]["reason"] == "hard_bounce"
    assert statuses["joe@dest.example"]["status"] == "queued"
    jane = Recipient.objects.get(message_id=body["id"], address="jane@dest.example")
    assert jane.state == RecipientState.SUPPRESSED
    assert Event.objects.filter(recipient=jane, type=EventType.SUPPRESSED).exists()
    assert deliver_queued() == 1  # only joe goes out

    # Processing the same report again changes nothing.
    assert inbound_process(stored.pk) == "gone"


def test_arf_complaint_is_an_event_and_a_suppression(api, inbound, delivered):
    recipient, verp = delivered
    stored = process(deliver_report(inbound, "fbl@bounces.postwerk.example", arf("jane@dest.example", verp)))
    assert stored.state == InboundMessage.State.PROCESSED and stored.type == "complaint"
    event = Event.objects.get(type=EventType.COMPLAINED)
    assert event.recipient_id == recipient.pk and event.details["feedback_type"] == "abuse"
    recipient.refresh_from_db()
    assert recipient.state == RecipientState.DELIVERED  # it arrived; the person complained
    assert Suppression.objects.get(address="jane@dest.example").reason == "complaint"
    assert Suppression.objects.get().expires_at is None  # complaints never expire by default


def test_unknown_forged_and_foreign_tokens_are_stored_not_applied(api, zone, inbound, delivered):
    recipient, verp = delivered
    report = dsn("jane@dest.example", "5.1.1", "550 5.1.1 user unknown")
    local, host = verp.split("@")
    forged = f"{local[:-1]}{'0' if local[-1] != '0' else '1'}@{host}"
    unknown = return_path(uuid.uuid4(), "pm-bounces.acme.example")
    other_org, _ = organization_get_or_create(name="Other")
    verified_domain(zone, other_org, "other.example")
    foreign = return_path(recipient.pk, "pm-bounces.other.example")  # a real token at another organization's host

    for address, why in ((forged, "forged"), (unknown, "names no delivery"), (foreign, "another organization")):
        stored = process(deliver_report(inbound, address, report))
        assert stored.state == InboundMessage.State.IGNORED, address
        assert why in stored.note
        assert bytes(stored.raw)  # kept
    recipient.refresh_from_db()
    assert recipient.state == RecipientState.DELIVERED
    assert not Suppression.objects.exists()


def test_inbound_mx_relays_nothing_and_offers_no_auth(inbound, domain):
    with smtplib.SMTP(*inbound, timeout=10) as client:
        client.ehlo("mx.dest.example")
        assert "auth" not in client.esmtp_features
        client.mail("")
        for address in ("someone@dest.example", "postmaster@acme.example", "random@pm-bounces.acme.example"):
            code, reply = client.rcpt(address)
            assert (code, reply[:5]) == (550, b"5.7.1"), address
        code, _ = client.docmd("AUTH", "PLAIN AGFhYQBiYmI=")
        assert code >= 500
        assert client.rcpt("postmaster@pm-bounces.acme.example")[0] == 250
        assert client.rcpt("fbl@bounces.postwerk.example")[0] == 250


def test_autoreply_is_recognised_and_not_a_bounce(inbound, delivered):
    recipient, verp = delivered
    reply = EmailMessage()
    reply["From"] = "jane@dest.example"
    reply["To"] = verp
    reply["Subject"] = "Out of office: Hi"
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content("I am away until Monday.")
    stored = process(deliver_report(inbound, verp, reply.as_bytes(), mail_from=""))
    assert stored.type == "autoreply" and stored.state == InboundMessage.State.IGNORED
    recipient.refresh_from_db()
    assert recipient.state == RecipientState.DELIVERED


def test_bad_reports_never_crash_and_nothing_is_lost(inbound, delivered, settings):
    recipient, verp = delivered
    malformed = b'Content-Type: multipart/report; boundary="x"\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n'
    no_recipient = dsn("", "5.0.0", "").replace(b"Final-Recipient: rfc822; \r\n", b"")
    big = dsn("jane@dest.example", "5.2.2", "552 5.2.2 Mailbox full") + (b"X" * 998 + b"\r\n") * 21_000
    bounce_of_bounce = dsn("MAILER-DAEMON@mx.dest.example", "5.1.1", "550 5.1.1 no such user")
    for raw in (malformed, no_recipient, bounce_of_bounce, b"\x00\xff garbage \r\n" * 10):
        stored = process(deliver_report(inbound, verp, raw))
        assert stored.state in (InboundMessage.State.IGNORED, InboundMessage.State.PROCESSED), stored.note
    stored = process(deliver_report(inbound, verp, big))
    assert stored.size > 20 * 1024 * 1024 and stored.state == InboundMessage.State.PROCESSED
    assert Event.objects.get(type=EventType.BOUNCED).details["reason"] == "mailbox_full"
    assert InboundMessage.objects.count() == 5


def test_sweep_requeues_a_report_whose_task_was_lost(inbound, delivered, settings):
    _, verp = delivered
    settings.POSTWERK_ENQUEUE_LEASE = 0
    stored = deliver_report(inbound, verp, dsn("jane@dest.example", "5.1.1", "550 5.1.1 unknown"))
    from sending.feedback.bounce_processing import inbound_due

    assert inbound_due() == [str(stored.pk)]
    assert stored.state == InboundMessage.State.RECEIVED


def test_synchronous_hard_bounce_suppresses_and_smtp_submission_records_suppressed(api, zone, mx, organization, domain):
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"gone@dest.example": "550 5.1.1 <gone@dest.example>: Recipient address rejected: User unknown"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["gone@dest.example"])
    deliver_queued()
    event = Event.objects.get(type=EventType.BOUNCED)
    assert (event.details["kind"], event.details["reason"], event.details["source"]) == ("hard", "user_unknown", "smtp")
    assert Suppression.objects.get().reason == "hard_bounce"

    credential, _ = smtp_credential_create(organization=organization, name="app")
    message = smtp_message_submit(
        credential=credential,
        mail_from="app@acme.example",
        rcpt_tos=["gone@dest.example"],
        raw=b"From: app@acme.example\r\nTo: gone@dest.example\r\nSubject: again\r\n\r\nbody\r\n",
    )
    assert Recipient.objects.get(message=message).state == RecipientState.SUPPRESSED


def test_soft_bounces_suppress_only_once_they_repeat(api, zone, mx, domain, settings):
    settings.POSTWERK_SOFT_BOUNCE_LIMIT = 2
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"full@dest.example": "552 5.2.2 Mailbox full"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["full@dest.example"])
    deliver_queued()
    assert Event.objects.get(type=EventType.BOUNCED).details["kind"] == "soft"
    assert not Suppression.objects.exists()
    send(api, ["full@dest.example"])
    deliver_queued()
    suppression = Suppression.objects.get()
    assert suppression.reason == "soft_bounce" and suppression.expires_at is not None


def test_suppression_api_lists_adds_removes_exports_and_imports(api, zone, domain, organization):
    assert (
        api.post("/api/v1/suppressions", {"address": "A@Dest.example", "note": "asked"}, format="json").status_code
        == 201
    )
    bad = api.post("/api/v1/suppressions", {"address": "not an address"}, format="json")
    assert bad.status_code == 400 and "address" in bad.json()["fields"]
    listed = api.get("/api/v1/suppressions", {"reason": "manual"}).json()["results"]
    assert [s["address"] for s in listed] == ["a@dest.example"]
    assert listed[0]["created_by"].startswith("api-key:")

    imported = api.post(
        "/api/v1/suppressions/import",
        "address,reason\nb@dest.example,manual\nc@dest.example,complaint\nbroken,manual\na@dest.example,manual\n",
        content_type="text/csv",
    ).json()
    assert (imported["added"], imported["existing"]) == (2, 1)
    assert imported["errors"][0]["line"] == 4

    exported = api.get("/api/v1/suppressions/export")
    assert exported["Content-Type"].startswith("text/csv")
    lines = exported.content.decode().splitlines()
    assert lines[0].startswith("address,reason") and len(lines) == 4

    assert api.delete("/api/v1/suppressions/a@dest.example").status_code == 204
    assert api.delete("/api/v1/suppressions/a@dest.example").status_code == 404
    removed = Suppression.objects.get(address="a@dest.example")
    assert removed.removed_at is not None and removed.removed_by.startswith("api-key:")
    assert "a@dest.example" not in [s["address"] for s in api.get("/api/v1/suppressions").json()["results"]]
    history = api.get("/api/v1/suppressions", {"include_removed": "true", "address": "a@"}).json()["results"]
    assert history[0]["removed_by"].startswith("api-key:")

    # Another organization sees none of it.
    other, _ = organization_get_or_create(name="Other")
    _, secret = api_key_create(organization=other, name="k")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/suppressions").json()["results"] == []
    assert api.delete("/api/v1/suppressions/b@dest.example").status_code == 404


def assert_failed_for_sender(recipient: Recipient, status: str) -> Event:
    """The delivery failed because our sender was refused: an event says so; nothing counts against the address."""
    recipient.refresh_from_db()
    assert recipient.state == RecipientState.FAILED
    assert recipient.bounce_kind == ""  # no bounce for reputation
    event = Event.objects.get(recipient=recipient, type=EventType.FAILED)
    assert (event.details["reason"], event.details["kind"], event.details["status"]) == (
        "sender_rejected",
        "soft",
        status,
    )
    assert not Event.objects.filter(type=EventType.BOUNCED).exists()
    assert not Suppression.objects.exists()
    return event


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("mail_reply", "status"),
    [
        ("553 5.1.8 <x@pm-bounces.acme.example>... Domain of sender address x@pm-bounces.acme.example does not exist",
         "5.1.8"),
        ("550 5.1.7 <x@pm-bounces.acme.example>: Bad sender's mailbox address syntax", "5.1.7"),
        # No enhanced code, and words that after RCPT would mean an unknown recipient: at MAIL FROM, our sender.
        ("550 Requested action not taken: mailbox unavailable", ""),
    ],
)  # fmt: skip
def test_a_sender_rejected_at_mail_from_fails_the_delivery_and_never_suppresses_the_recipient(
    api, zone, mx, domain, mail_reply, status, pipelining
):
    sink = mx("127.0.0.2")
    sink.mail_reply, sink.pipelining = mail_reply, pipelining
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])
    deliver_queued()

    recipient = Recipient.objects.get()
    event = assert_failed_for_sender(recipient, status)
    assert event.details["diagnostic"].endswith(mail_reply.split(" ", 2 if status else 1)[-1])
    assert event.details["smtp"]["code"] == int(mail_reply[:3])
    # The address still takes mail once the sender is accepted.
    sink.mail_reply = None
    body = send(api, ["jane@dest.example"], report_suppressed=True)
    assert body["recipients"][0]["status"] == "queued"
    deliver_queued()
    assert [m.rcpt_tos for m in sink.messages] == [["jane@dest.example"]]


def test_a_transient_sender_rejection_defers_and_fails_without_a_bounce_when_it_expires(
    api, zone, mx, domain, settings
):
    sink = mx("127.0.0.2")
    sink.mail_reply = "451 4.1.8 <x@pm-bounces.acme.example>: Sender address rejected: Domain not found"
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])
    deliver_queued()
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DEFERRED
    deferred = Event.objects.get(recipient=recipient, type=EventType.DEFERRED)
    assert deferred.details["reason"] == "sender_rejected"

    settings.POSTWERK_MAX_DELIVERY_AGE = 0  # the next failure is the last
    Recipient.objects.filter(pk=recipient.pk).update(state=RecipientState.QUEUED)
    deliver_queued()
    assert_failed_for_sender(recipient, "4.1.8")


@pytest.mark.parametrize(
    ("rcpt_reply", "state"),
    [
        ("553 5.1.8 <x@pm-bounces.acme.example>: Sender address rejected: Domain not found", RecipientState.FAILED),
        ("550 5.7.1 <x@pm-bounces.acme.example>: Sender address rejected: User unknown", RecipientState.FAILED),
        ("450 4.1.8 <x@pm-bounces.acme.example>: Sender address rejected: Domain not found", RecipientState.DEFERRED),
    ],
)
def test_postfix_sender_address_rejected_at_rcpt_is_about_the_sender(api, zone, mx, domain, rcpt_reply, state):
    # Postfix (smtpd_delay_reject=yes, its default) answers its sender restrictions at RCPT TO.
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"jane@dest.example": rcpt_reply}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api, ["jane@dest.example"])
    deliver_queued()
    recipient = Recipient.objects.get()
    if state == RecipientState.FAILED:
        assert_failed_for_sender(recipient, rcpt_reply.split()[1])
    else:
        recipient.refresh_from_db()
        assert recipient.state == RecipientState.DEFERRED
        assert Event.objects.get(recipient=recipient, type=EventType.DEFERRED).details["reason"] == "sender_rejected"
        assert not Suppression.objects.exists()


def test_a_dsn_saying_our_sender_was_rejected_fails_the_delivery_and_suppresses_nothing(api, inbound, delivered):
    recipient, verp = delivered
    # A relay that accepted the message, then was refused our sender by the next hop.
    report = dsn(
        "jane@dest.example",
        "5.1.8",
        f"553 5.1.8 <{verp}>... Domain of sender address {verp} does not exist",
    )
    stored = process(deliver_report(inbound, verp, report))
    assert stored.state == InboundMessage.State.PROCESSED and stored.type == "bounce"
    assert stored.result["recipients"][0]["reason"] == "sender_rejected"
    event = assert_failed_for_sender(recipient, "5.1.8")
    assert event.details["source"] == "dsn" and "Domain of sender address" in event.details["diagnostic"]

    body = send(api, ["jane@dest.example"], report_suppressed=True)
    assert body["recipients"][0]["status"] == "queued"


NAMELESS_NOTICE = """From: MAILER-DAEMON@mx.dest.example
To: {to}
Subject: Mail delivery failed
MIME-Version: 1.0
Content-Type: text/plain

Your message could not be delivered.
550 5.1.1 Requested action not taken: mailbox unavailable

--- Below this line is a copy of the message.

From: hello@acme.example
To: jane@dest.example, joe@dest.example
Subject: Hi

Hello there
"""


def test_a_bounce_naming_no_recipient_is_applied_through_its_return_path_token(api, inbound, delivered):
    recipient, verp = delivered
    raw = NAMELESS_NOTICE.format(to=verp).replace("\n", "\r\n").encode()
    stored = process(deliver_report(inbound, verp, raw))
    assert stored.state == InboundMessage.State.PROCESSED, stored.note
    assert stored.result["recipients"] == []  # the notice names nobody (the original went to two people)
    assert stored.result["unnamed"]["reason"] == "user_unknown"
    event = Event.objects.get(recipient=recipient, type=EventType.BOUNCED)
    assert event.details["address"] == "jane@dest.example"
    assert event.details["matched_by"] == "verp+unnamed/status:5.1.1"
    assert (event.details["kind"], event.details["reason"]) == ("hard", "user_unknown")


def test_a_bounce_with_no_recipient_and_no_token_is_kept_as_unmatched(inbound, delivered):
    # The feedback address: accepted without a token, so nothing says whose delivery this was.
    raw = NAMELESS_NOTICE.format(to="fbl@bounces.postwerk.example").replace("\n", "\r\n").encode()
    stored = process(deliver_report(inbound, "fbl@bounces.postwerk.example", raw))
    assert stored.state == InboundMessage.State.UNMATCHED
    assert stored.type == "bounce"
    assert stored.note == "a report that names no recipient and came to no return-path token"
    assert bytes(stored.raw)  # kept, never dropped
    assert not Suppression.objects.exists()


def test_every_applied_bounce_records_the_rule_that_classified_it(api, inbound, delivered):
    recipient, verp = delivered
    report = dsn("jane@dest.example", "5.2.2", "552 5.2.2 <jane@dest.example>: Mailbox full")
    process(deliver_report(inbound, verp, report))
    event = Event.objects.get(recipient=recipient, type=EventType.BOUNCED)
    assert event.details["matched_by"] == "dsn/text:mailbox_full"


def test_an_unmatched_report_at_an_organizations_host_is_listed_by_its_api(api, inbound, delivered):
    recipient, verp = delivered
    host = verp.rpartition("@")[2]  # the organization's own return-path host
    raw = NAMELESS_NOTICE.format(to=f"fbl@{host}").replace("\n", "\r\n").encode()
    stored = process(deliver_report(inbound, f"fbl@{host}", raw))
    assert stored.state == InboundMessage.State.UNMATCHED
    listed = api.get("/api/v1/feedback/reports", {"state": "unmatched"}).json()["results"]
    assert [(r["id"], r["state"], r["type"], r["recipients"]) for r in listed] == [
        (str(stored.pk), "unmatched", "bounce", [])
    ]
    assert listed[0]["unnamed"]["reason"] == "user_unknown"
    assert listed[0]["note"] == "a report that names no recipient and came to no return-path token"
    bad = api.get("/api/v1/feedback/reports", {"state": "lost"})
    assert bad.status_code == 400 and bad.json()["fields"] == {"state": ["Unknown state."]}
