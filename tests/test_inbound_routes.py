"""Inbound routing end to end: an inbound domain's MX record checked through the loopback DNS server, routes made
through the API, mail sent with smtplib to the real inbound listener, the post received by a real HTTP server
and its Postwerk-Signature verified, the stored message read back through the API."""

from __future__ import annotations

import base64
import json
import smtplib
import ssl
import subprocess
import time
from email.message import EmailMessage

import pytest
from django.test import Client

from sending.domains.service import dns_records
from sending.domains.verification import domain_verify
from sending.inbound.matching import RouteRef, match_parse, route_for
from sending.inbound.routes import inbound_domain_set
from sending.models import DnsCheck, InboundMail, InboundMessage, InboundRoute, WebhookAttempt, WebhookDelivery
from sending.smtp.inbound_limits import reset
from sending.webhooks import dispatch, transport
from sending.webhooks.signing import signature_verify
from tests.servers.certs import make_self_signed
from tests.servers.http_receiver import HttpReceiver
from tests.servers.opendkim_postfix import available, opendkim_postfix
from tests.test_bounces import inbound  # noqa: F401 - the inbound listener fixture

pytestmark = pytest.mark.django_db(transaction=True)
# ruff: noqa: F811 - tests take the imported `inbound` listener fixture by name

HOST = "inbound.acme.example"
SENDER = "customer.example"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    # The operator's allowances for a receiver on loopback over plain http.
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    settings.POSTWERK_WEBHOOK_TIMEOUT = 2.0
    settings.POSTWERK_DASHBOARD_URL = "https://postwerk.example"
    return settings


@pytest.fixture
def inbound_domain(domain, zone):
    """acme.example receiving at inbound.acme.example; the customer's domain passes SPF from 127.0.0.1."""
    inbound_domain_set(domain=domain, enabled=True, subdomain="inbound")
    zone.add(SENDER, "TXT", "v=spf1 ip4:127.0.0.1 -all")
    zone.add(f"_dmarc.{SENDER}", "TXT", "v=DMARC1; p=none")
    return domain


@pytest.fixture
def receiver():
    with HttpReceiver() as server:
        yield server


def add_route(api, match, action, **fields):
    response = api.post("/api/v1/inbound-routes", {"match": match, "action": action, **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def message(to: str, *, sender: str = f"Jane Customer <jane@{SENDER}>", attachments=()) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Cc"] = "Ops <ops@acme.example>"
    msg["Reply-To"] = f"jane+reply@{SENDER}"
    msg["Subject"] = "Re: your order"
    msg["Date"] = "Tue, 08 Dec 2026 00:00:00 +0000"
    msg["Message-ID"] = f"<reply-1@{SENDER}>"
    msg.set_content(
        "Yes, please ship it on Monday.\n\n-- \nJane Customer\nCustomer Ltd.\n\n"
        "On Mon, Dec 7, 2026 at 9:00 AM Acme <orders@acme.example> wrote:\n> Shall we ship your order?\n> Acme\n"
    )
    msg.add_alternative("<p>Yes, please ship it on Monday.</p>", subtype="html")
    for name, content in attachments:
        msg.add_attachment(content, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def smtp_send(address, rcpts: list[str], raw: bytes, mail_from: str = f"bounce@{SENDER}"):
    """(RCPT replies, DATA reply) over a real SMTP session with the inbound listener."""
    with smtplib.SMTP(*address, timeout=10) as client:
        client.ehlo(f"mx.{SENDER}")
        assert client.mail(mail_from)[0] == 250
        rcpt_replies = [client.rcpt(r) for r in rcpts]
        if not any(code == 250 for code, _ in rcpt_replies):
            return rcpt_replies, None
        return rcpt_replies, client.data(raw)


def run_posts() -> int:
    """What the webhook task does with the ids published after commit, and the sweep with due retries."""
    due = [delivery_id for delivery_id, _ in dispatch.deliveries_due()]
    queued = [str(pk) for pk in WebhookDelivery.objects.filter(state="queued").values_list("pk", flat=True)]
    ids = json.loads(json.dumps(list(dict.fromkeys(due + queued))))  # tasks carry ids only, as JSON
    return dispatch.deliveries_send(ids) if ids else 0


def test_inbound_host_shows_its_mx_record_and_it_is_checked_like_the_others(domain, zone):
    inbound_domain_set(domain=domain, enabled=True, subdomain="inbound")
    records = [r for r in dns_records(domain) if r["purpose"] == "inbound"]
    assert [(r["type"], r["name"], r["value"]) for r in records] == [("MX", HOST, "10 bounces.postwerk.example.")]
    domain_verify(domain=domain)
    check = DnsCheck.objects.get(domain=domain, name="inbound_mx")
    assert check.status == "missing" and "Add MX records to bounces.postwerk.example" in check.message
    zone.add(HOST, "MX", "10 mx.elsewhere.example.")
    domain_verify(domain=domain)
    check.refresh_from_db()
    assert check.status == "wrong" and "mx.elsewhere.example" in check.message
    zone.clear()
    from tests.conftest import publish_records

    publish_records(zone, domain, ("ownership", "dkim", "return_path", "inbound"))
    domain_verify(domain=domain)
    check.refresh_from_db()
    domain.refresh_from_db()
    assert check.status == "ok" and domain.inbound_mx_ok


def test_routes_match_exact_then_pattern_then_subaddress_base_then_catch_all():
    def ref(match):
        parsed = match_parse(match)
        return RouteRef(parsed.match, parsed.kind, parsed.local, parsed.match)

    routes = [
        ref(m) for m in ("*@h.example", "support@h.example", "orders+*@h.example", "o*@h.example", "orders@h.example")
    ]
    assert route_for("support", routes).id == "support@h.example"
    assert route_for("Support", routes).id == "support@h.example"
    assert route_for("support+42", routes).id == "support@h.example"  # sub-address of an exact route
    assert route_for("orders+42", routes).id == "orders+*@h.example"  # the longer pattern wins over o*
    assert route_for("orders", routes).id == "orders@h.example"  # exact before any pattern
    assert route_for("office", routes).id == "o*@h.example"
    assert route_for("nobody", routes).id == "*@h.example"
    assert route_for("nobody", routes[1:]) is None


def test_unknown_and_refused_recipients_are_refused_at_rcpt_and_other_hosts_are_no_relay(api, inbound, inbound_domain):
    add_route(api, f"support@{HOST}", "store")
    add_route(api, f"noreply@{HOST}", "refuse")
    replies, data = smtp_send(
        inbound,
        [f"nobody@{HOST}", f"noreply@{HOST}", "someone@elsewhere.example", f"support@{HOST}"],
        message(f"support@{HOST}"),
    )
    assert [code for code, _ in replies] == [550, 550, 550, 250]
    assert replies[0][1].startswith(b"5.1.1") and replies[1][1].startswith(b"5.1.1")
    assert replies[2][1].startswith(b"5.7.1")
    assert data[0] == 250
    (stored,) = InboundMail.objects.all()
    assert (stored.rcpt_to, stored.state, stored.action) == (f"support@{HOST}", "stored", "store")
    assert InboundMessage.objects.count() == 0  # nothing went to the bounce processing


@pytest.fixture
def https_receiver(zone, tmp_path, monkeypatch):
    """A real HTTPS receiver at hooks.acme-app.example, its self-signed certificate trusted by the sender."""
    cert, key = make_self_signed(tmp_path, "hooks.acme-app.example")
    zone.add("hooks.acme-app.example", "A", "127.0.0.1")
    monkeypatch.setattr(transport, "_tls_context", lambda: ssl.create_default_context(cafile=cert))
    with HttpReceiver(tls=(cert, key)) as server:
        yield server


def test_post_route_sends_postmarks_shape_signed_through_the_webhook_machinery(
    api, inbound, inbound_domain, https_receiver, settings
):
    receiver = https_receiver
    settings.POSTWERK_INBOUND_INLINE_ATTACHMENTS = 1000
    route = add_route(api, f"orders+*@{HOST}", "post", url=receiver.url(host="hooks.acme-app.example"))
    secret = route["secret"]
    small, large = b"a small note", bytes(range(256)) * 8
    raw = message(f"Acme Orders <orders+4711@{HOST}>", attachments=[("note.txt", small), ("big.bin", large)])
    replies, (code, reply) = smtp_send(inbound, [f"orders+4711@{HOST}"], raw)
    assert code == 250, reply
    mail = InboundMail.objects.get()
    assert reply.decode().endswith(str(mail.pk))
    assert run_posts() == 1
    (request,) = receiver.requests
    assert signature_verify(request.headers["postwerk-signature"], request.body, secret)
    assert request.headers["postwerk-event-type"] == "inbound"
    body = json.loads(request.body)
    assert body["From"] == f"jane@{SENDER}" and body["FromName"] == "Jane Customer"
    assert body["FromFull"] == {"Email": f"jane@{SENDER}", "Name": "Jane Customer", "MailboxHash": ""}
    assert body["ToFull"] == [{"Email": f"orders+4711@{HOST}", "Name": "Acme Orders", "MailboxHash": "4711"}]
    assert body["CcFull"] == [{"Email": "ops@acme.example", "Name": "Ops", "MailboxHash": ""}]
    assert body["MailboxHash"] == "4711" and body["OriginalRecipient"] == f"orders+4711@{HOST}"
    assert (body["Subject"], body["ReplyTo"], body["MessageID"]) == (
        "Re: your order",
        f"jane+reply@{SENDER}",
        str(mail.pk),
    )
    assert body["Date"] == "Tue, 08 Dec 2026 00:00:00 +0000"
    assert body["StrippedTextReply"] == "Yes, please ship it on Monday."
    assert "Shall we ship" in body["TextBody"] and body["HtmlBody"].startswith("<p>Yes, please ship")
    assert {"Name": "Message-ID", "Value": f"<reply-1@{SENDER}>"} in body["Headers"]
    note, big = body["Attachments"]
    assert base64.b64decode(note["Content"]) == small and note["ContentLength"] == len(small)
    assert "Content" not in big and big["ContentLength"] == len(large)
    assert body["Authentication"]["spf"] == "pass" and body["Authentication"]["dmarc"] == "pass"
    assert body["AuthenticationResults"].startswith("mta.postwerk.example;")
    # The signed links work without an API key, and not once altered.
    client = Client()
    link_path = big["Url"].removeprefix("https://postwerk.example")
    assert client.get(link_path).content == large
    assert client.get(link_path[:-2] + "xx").status_code == 404
    raw_link = client.get(body["RawUrl"].removeprefix("https://postwerk.example"))
    assert raw_link.content.startswith(b"Authentication-Results: mta.postwerk.example;")
    # The attempt is in the webhook delivery log, and the API shows it with the message.
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "succeeded" and WebhookAttempt.objects.get().status_code == 200
    detail = api.get(f"/api/v1/inbound/{mail.pk}").json()
    assert detail["post_state"] == "succeeded" and detail["deliveries"][0]["attempt_log"][0]["status_code"] == 200


def test_a_failing_endpoint_gets_the_retries_and_a_retry_by_hand_posts_again(api, inbound, inbound_domain, receiver):
    add_route(api, f"*@{HOST}", "post", url=receiver.url())
    receiver.answers = [500]
    assert smtp_send(inbound, [f"anyone@{HOST}"], message(f"anyone@{HOST}"))[1][0] == 250
    assert run_posts() == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.last_status) == ("pending", 500)  # on the webhook retry schedule
    mail = InboundMail.objects.get()
    response = api.post(f"/api/v1/inbound/{mail.pk}/retry")
    assert response.status_code == 202 and response.json()["trigger"] == "replay"
    run_posts()
    assert len(receiver.requests) == 2
    assert sorted(WebhookDelivery.objects.values_list("state", flat=True)) == ["pending", "succeeded"]


def test_inbound_api_lists_filters_pages_and_reads_raw_with_authentication_results(api, inbound, inbound_domain):
    add_route(api, f"support@{HOST}", "store")
    add_route(api, f"review@{HOST}", "hold")
    for rcpt in ("support", "review", "support"):
        assert smtp_send(inbound, [f"{rcpt}@{HOST}"], message(f"{rcpt}@{HOST}"))[1][0] == 250
    page = api.get("/api/v1/inbound", {"page_size": 2}).json()
    assert len(page["results"]) == 2 and page["next"]
    rest = api.get(page["next"]).json()
    ids = [r["id"] for r in page["results"] + rest["results"]]
    assert ids == [str(pk) for pk in InboundMail.objects.order_by("-received_at", "-id").values_list("pk", flat=True)]
    held = api.get("/api/v1/inbound", {"state": "held"}).json()["results"]
    assert [(r["rcpt_to"], r["action"]) for r in held] == [(f"review@{HOST}", "hold")]
    assert (
        api.get("/api/v1/inbound", {"recipient": f"support@{HOST}"}).json()["results"][0]["subject"] == "Re: your order"
    )
    bad = api.get("/api/v1/inbound", {"state": "lost"})
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["state"]
    raw = api.get(f"/api/v1/inbound/{ids[0]}/raw")
    assert raw["Content-Type"] == "message/rfc822"
    first = raw.content.split(b"\r\n\t")[0]
    assert first == b"Authentication-Results: mta.postwerk.example;"
    assert b"spf=pass smtp.mailfrom=customer.example" in raw.content
    assert api.post(f"/api/v1/inbound/{ids[0]}/retry").status_code == 409  # a store route posts nothing


def test_forged_authentication_results_with_our_id_are_removed(api, inbound, inbound_domain):
    add_route(api, f"support@{HOST}", "store")
    raw = b"Authentication-Results: mta.postwerk.example; dmarc=pass\r\n" + message(f"support@{HOST}")
    smtp_send(inbound, [f"support@{HOST}"], raw)
    stored = bytes(InboundMail.objects.get().raw)
    assert stored.count(b"Authentication-Results: mta.postwerk.example;") == 1 and b"; dmarc=pass\r\n" not in stored


def test_mail_failing_dmarc_under_p_reject_is_refused_or_held_as_the_route_says(api, inbound, inbound_domain, zone):
    zone.clear()
    zone.add("forged.example", "TXT", "v=spf1 -all")
    zone.add("_dmarc.forged.example", "TXT", "v=DMARC1; p=reject")
    add_route(api, f"strict@{HOST}", "store", dmarc_reject="refuse")
    add_route(api, f"review@{HOST}", "store", dmarc_reject="hold")
    add_route(api, f"open@{HOST}", "store")
    forged = message(f"strict@{HOST}", sender="ceo@forged.example")
    _, (code, reply) = smtp_send(inbound, [f"strict@{HOST}"], forged, mail_from="ceo@forged.example")
    assert code == 550 and reply.startswith(b"5.7.1")
    assert InboundMail.objects.count() == 0
    for rcpt in ("review", "open"):
        _, (code, _) = smtp_send(inbound, [f"{rcpt}@{HOST}"], forged, mail_from="ceo@forged.example")
        assert code == 250
    states = dict(InboundMail.objects.values_list("rcpt_to", "state"))
    assert states == {f"review@{HOST}": "held", f"open@{HOST}": "stored"}
    held = InboundMail.objects.get(rcpt_to=f"review@{HOST}")
    assert held.auth["dmarc"] == "fail" and held.note == "held: fails DMARC under p=reject"
    assert not WebhookDelivery.objects.exists()
    # A held message of a post route is released by posting it by hand.
    with HttpReceiver() as receiver:
        route = InboundRoute.objects.get(match=f"review@{HOST}")
        api.patch(f"/api/v1/inbound-routes/{route.pk}", {"action": "post", "url": receiver.url()}, format="json")
        assert api.post(f"/api/v1/inbound/{held.pk}/retry").status_code == 202
        assert run_posts() == 1 and len(receiver.requests) == 1
    held.refresh_from_db()
    assert (held.state, held.note) == ("stored", "held: fails DMARC under p=reject; released by hand")


def test_routes_api_validates_and_changes_routes(api, inbound_domain, receiver):
    taken = api.post(
        f"/api/v1/domains/{inbound_domain.pk}/inbound", {"enabled": True, "subdomain": "pm-bounces"}, format="json"
    )
    assert taken.status_code == 400 and "return-path or tracking host" in taken.json()["fields"]["subdomain"][0]
    bad = api.post("/api/v1/inbound-routes", {"match": "x@not-ours.example", "action": "store"}, format="json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["match"]
    bad = api.post("/api/v1/inbound-routes", {"match": f"x@{HOST}", "action": "post"}, format="json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["url"]
    route = add_route(api, f"x@{HOST}", "store")
    assert route["kind"] == "exact" and route["secret"] is None
    dup = api.post("/api/v1/inbound-routes", {"match": f"X@{HOST}", "action": "hold"}, format="json")
    assert dup.status_code == 400 and list(dup.json()["fields"]) == ["match"]
    changed = api.patch(
        f"/api/v1/inbound-routes/{route['id']}", {"action": "post", "url": receiver.url()}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["secret"].startswith("whsec_")
    assert changed.json()["url"] == receiver.url()
    assert [r["match"] for r in api.get("/api/v1/inbound-routes").json()] == [f"x@{HOST}"]
    assert api.delete(f"/api/v1/inbound-routes/{route['id']}").status_code == 204
    assert api.get(f"/api/v1/inbound-routes/{route['id']}").status_code == 404


def test_mail_relayed_by_postfix_and_signed_by_opendkim_arrives_with_dkim_pass(api, inbound, inbound_domain, zone):
    # Fails, never skips, where OpenDKIM or Postfix is missing: .ci/run installs both.
    assert available() == ""
    zone.clear()  # the sender publishes p=reject here instead of the fixture's p=none
    zone.add(SENDER, "TXT", "v=spf1 ip4:127.0.0.1 -all")
    zone.add(f"_dmarc.{SENDER}", "TXT", "v=DMARC1; p=reject")
    add_route(api, f"support@{HOST}", "store", dmarc_reject="refuse")
    with opendkim_postfix(domain=SENDER, selector="od1", relay=inbound) as (port, key):
        zone.add(f"od1._domainkey.{SENDER}", "TXT", key)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(f"jane@{SENDER}", [f"support@{HOST}"], message(f"support@{HOST}"))
        deadline = time.monotonic() + 60
        while not InboundMail.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    mail = InboundMail.objects.get()
    assert [(d["domain"], d["selector"], d["result"]) for d in mail.auth["dkim"]] == [(SENDER, "od1", "pass")]
    assert (mail.auth["spf"], mail.auth["dmarc"], mail.auth["dmarc_policy"]) == ("pass", "pass", "reject")
    raw = bytes(mail.raw)
    assert raw.startswith(b"Authentication-Results: mta.postwerk.example;")
    assert f"dkim=pass header.d={SENDER} header.s=od1 header.a=rsa-sha256".encode() in raw
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256;" in raw


def test_swaks_delivers_an_attachment_that_the_api_reads_back(api, inbound, inbound_domain, tmp_path):
    add_route(api, f"*@{HOST}", "store")
    attachment = tmp_path / "invoice.pdf"
    attachment.write_bytes(b"%PDF-1.4 not really a pdf\n")
    done = subprocess.run(
        [
            "swaks",
            "--server",
            inbound[0],
            "--port",
            str(inbound[1]),
            "--helo",
            f"mx.{SENDER}",
            "--from",
            f"jane@{SENDER}",
            "--to",
            f"billing+7@{HOST}",
            "--header",
            "Subject: Invoice 7",
            "--body",
            "Here it is.",
            "--attach-type",
            "application/pdf",
            "--attach-name",
            "invoice.pdf",
            "--attach",
            f"@{attachment}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (listed,) = api.get("/api/v1/inbound").json()["results"]
    assert (listed["rcpt_to"], listed["subject"], listed["state"]) == (f"billing+7@{HOST}", "Invoice 7", "stored")
    parsed = api.get(f"/api/v1/inbound/{listed['id']}").json()["parsed"]
    assert parsed["MailboxHash"] == "7" and parsed["TextBody"].strip() == "Here it is."


def test_a_client_address_over_its_message_limit_is_told_to_come_back_later(api, inbound, inbound_domain, settings):
    settings.POSTWERK_INBOUND_MESSAGES_PER_IP = 2
    reset("127.0.0.1")
    add_route(api, f"support@{HOST}", "store")
    for _ in range(2):
        assert smtp_send(inbound, [f"support@{HOST}"], message(f"support@{HOST}"))[1][0] == 250
    with smtplib.SMTP(*inbound, timeout=10) as client:
        client.ehlo(f"mx.{SENDER}")
        code, reply = client.mail(f"bounce@{SENDER}")
    assert (code, reply) == (450, b"4.7.1 Too many messages from your address; try again later")
    assert InboundMail.objects.count() == 2
    reset("127.0.0.1")


def test_a_message_with_nul_characters_is_stored_like_any_other(api, inbound, inbound_domain):
    add_route(api, f"support@{HOST}", "store")
    raw = (f"From: jane@{SENDER}\r\nTo: support@{HOST}\r\nSubject: a\x00b\r\n\r\nbody \x00 with a NUL\r\n").encode()
    assert smtp_send(inbound, [f"support@{HOST}"], raw)[1][0] == 250
    stored = InboundMail.objects.get()
    assert stored.subject == "a\ufffdb" and "\ufffd" in stored.parsed["TextBody"]
    assert b"body \x00 with a NUL" in bytes(stored.raw)  # the raw message as it came


def test_held_mail_is_released_stored_or_posted_as_its_route_says_and_audited(api, inbound, inbound_domain, zone):
    from accounts.models import AuditEntry

    add_route(api, f"review@{HOST}", "hold")
    add_route(api, f"store@{HOST}", "store")
    for rcpt in ("review", "store"):
        assert smtp_send(inbound, [f"{rcpt}@{HOST}"], message(f"{rcpt}@{HOST}"))[1][0] == 250
    held, stored = InboundMail.objects.get(rcpt_to=f"review@{HOST}"), InboundMail.objects.get(rcpt_to=f"store@{HOST}")
    assert held.state == "held"
    conflict = api.post(f"/api/v1/inbound/{stored.pk}/release")
    assert (
        conflict.status_code == 409
        and conflict.json()["message"] == "The message is stored, not held: nothing to release."
    )
    released = api.post(f"/api/v1/inbound/{held.pk}/release")
    assert released.status_code == 200
    assert (released.json()["state"], released.json()["deliveries"]) == ("stored", [])  # a hold route posts nothing
    assert api.post(f"/api/v1/inbound/{held.pk}/release").status_code == 409  # released once
    entry = AuditEntry.objects.get(action="inbound.released")
    assert (entry.target, entry.changes) == (
        f"review@{HOST}: Re: your order",
        {"state": ["held", "stored"], "posted": False},
    )

    # Held for failing DMARC under p=reject on a post route: released by posting it.
    zone.add("forged.example", "TXT", "v=spf1 -all")
    zone.add("_dmarc.forged.example", "TXT", "v=DMARC1; p=reject")
    with HttpReceiver() as receiver:
        add_route(api, f"hooks@{HOST}", "post", url=receiver.url(), dmarc_reject="hold")
        forged = message(f"hooks@{HOST}", sender="ceo@forged.example")
        assert smtp_send(inbound, [f"hooks@{HOST}"], forged, mail_from="ceo@forged.example")[1][0] == 250
        mail = InboundMail.objects.get(rcpt_to=f"hooks@{HOST}")
        assert mail.state == "held" and run_posts() == 0
        released = api.post(f"/api/v1/inbound/{mail.pk}/release")
        assert released.status_code == 200 and [d["state"] for d in released.json()["deliveries"]] == ["queued"]
        assert run_posts() == 1 and len(receiver.requests) == 1
    assert json.loads(receiver.requests[0].body)["To"] == f"hooks@{HOST}"
    assert AuditEntry.objects.filter(action="inbound.released").count() == 2
    missing = api.post("/api/v1/inbound/00000000-0000-0000-0000-000000000000/release")
    assert missing.status_code == 404
