"""No listener relays: not the submission listeners without AUTH, not with AUTH for a sender domain the
credential may not use, and not the inbound MX, whatever the address tricks (RFC 5321 §3.6.1 and Appendix C
source routes, `%` hacks, quoted local parts holding an `@`, UUCP `!` paths)."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from accounts.services import organization_get_or_create
from sending.models import InboundMessage, Message, Recipient
from tests.conftest import verified_domain

pytestmark = pytest.mark.django_db(transaction=True)

RP = "bounces.postwerk.example"  # the platform's return-path host in the tests (tests/conftest.py)

# Recipient forms that try to make a host relay to victim@elsewhere.example.
RELAY_RECIPIENTS = [
    "<victim@elsewhere.example>",
    f"<victim%elsewhere.example@{RP}>",
    f"<fbl%elsewhere.example@{RP}>",
    f"<@{RP}:victim@elsewhere.example>",
    f"<@{RP},@pm-bounces.acme.example:victim@elsewhere.example>",
    f'<"victim@elsewhere.example"@{RP}>',
    f'<"fbl@elsewhere.example"@{RP}>',
    f"<elsewhere.example!victim@{RP}>",
    f"<elsewhere.example!fbl@{RP}>",
    f"<victim@elsewhere.example@{RP}>",
    f"<fbl@{RP}@elsewhere.example>",
    "<victim@[127.0.0.1]>",
    "<victim@elsewhere.example.>",
    "<victim%elsewhere.example>",
    "<elsewhere.example!victim>",
]
# What the inbound MX answers each of them: relaying denied, or not an address at all.
MALFORMED = "553 5.1.3 Error: malformed address"
BAD_RCPT_SYNTAX = "553 5.1.3 Bad recipient address syntax"
INBOUND_REPLIES = dict.fromkeys(RELAY_RECIPIENTS, "550 5.7.1 Relay denied") | {
    f"<victim@elsewhere.example@{RP}>": MALFORMED,
    f"<fbl@{RP}@elsewhere.example>": MALFORMED,
    "<victim@elsewhere.example.>": MALFORMED,
    "<victim%elsewhere.example>": BAD_RCPT_SYNTAX,
    "<elsewhere.example!victim>": BAD_RCPT_SYNTAX,
}


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def open_client(server, listener: str, *, tls: bool) -> smtplib.SMTP:
    host, port = server.bound[listener]
    if listener == "submissions":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=10, context=_unverified())
    else:
        client = smtplib.SMTP(host, port, timeout=10)
    client.ehlo("client.example")
    if tls and listener == "submission":
        client.starttls(context=_unverified())
        client.ehlo("client.example")
    return client


@pytest.mark.parametrize(
    ("listener", "tls"), [("submission", False), ("submission", True), ("submissions", True)], ids=str
)
def test_submission_without_auth_relays_nothing(smtp_server, listener, tls):
    client = open_client(smtp_server, listener, tls=tls)
    for sender in ("<>", "<someone@elsewhere.example>", "<hello@acme.example>", f"<@acme.example:x@{RP}>"):
        assert client.docmd("MAIL", f"FROM:{sender}") == (530, b"5.7.0 Authentication required"), sender
        for rcpt in RELAY_RECIPIENTS:
            reply = client.docmd("RCPT", f"TO:{rcpt}")
            assert reply == (530, b"5.7.0 Authentication required"), (sender, rcpt)
        assert client.docmd("DATA") == (530, b"5.7.0 Authentication required")
        client.rset()
    client.quit()
    assert not Message.objects.exists()


NOT_ALLOWED = "550 5.7.1 Sender domain {} is not allowed for this credential"
BAD_SYNTAX = "553 5.1.7 Bad sender address syntax"
# Each spoofing attempt and the one reply it gets: the domain the address really names is refused, and forms
# that hide one domain behind another are not addresses Postwerk sends from.
SPOOFED_SENDERS = [
    ("<ceo@victim.example>", NOT_ALLOWED.format("victim.example")),
    ("<@acme.example:ceo@victim.example>", NOT_ALLOWED.format("victim.example")),  # the source route is ignored
    ('<"hello@acme.example"@victim.example>', BAD_SYNTAX),
    ("<hello%acme.example@victim.example>", NOT_ALLOWED.format("victim.example")),
    ("<hello@acme.example@victim.example>", BAD_SYNTAX),
    ("<hello@victim.example.acme.example.>", BAD_SYNTAX),
    ("<hello@globex.example>", NOT_ALLOWED.format("globex.example")),  # another organization's verified domain
    ("<>", BAD_SYNTAX),
]


@pytest.fixture
def globex(zone):  # type: ignore[no-untyped-def]
    org, _ = organization_get_or_create(name="Globex")
    return verified_domain(zone, org, "globex.example")


@pytest.mark.parametrize("listener", ["submission", "submissions"])
def test_authenticated_submission_cannot_send_as_another_domain(smtp_server, credential, globex, listener):
    client = open_client(smtp_server, listener, tls=True)
    client.login(*credential)
    for sender, expected in SPOOFED_SENDERS:
        code, text = client.docmd("MAIL", f"FROM:{sender}")
        assert f"{code} {text.decode()}" == expected, sender
        client.rset()
    client.quit()
    assert not Message.objects.exists()


SPOOFED_FROM_HEADERS = [
    "From: ceo@victim.example",
    'From: "hello@acme.example" <ceo@victim.example>',
    "From: hello@acme.example, ceo@victim.example",
    "From: hello@acme.example\r\nFrom: ceo@victim.example",
    "From: ceo@victim.example\r\nFrom: hello@acme.example",
    "From: <@acme.example:ceo@victim.example>",
    "From: hello@globex.example",
]


@pytest.mark.parametrize("from_header", SPOOFED_FROM_HEADERS)
def test_authenticated_submission_checks_every_from_header(smtp_server, credential, globex, from_header):
    client = open_client(smtp_server, "submission", tls=True)
    client.login(*credential)
    assert client.mail("hello@acme.example")[0] == 250
    assert client.rcpt("jane@dest.example")[0] == 250
    raw = f"{from_header}\r\nTo: jane@dest.example\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    refused_domain = "globex.example" if "globex" in from_header else "victim.example"
    assert client.data(raw) == (550, f"5.7.1 From domain {refused_domain} is not allowed for this credential".encode())
    client.quit()
    assert not Message.objects.exists()


def test_inbound_mx_relays_nothing_whatever_the_address_trick(inbound, domain):
    with smtplib.SMTP(*inbound, timeout=10) as client:
        client.ehlo("mx.elsewhere.example")
        for sender in ("<>", "<someone@elsewhere.example>"):
            assert client.docmd("MAIL", f"FROM:{sender}")[0] == 250
            for rcpt in RELAY_RECIPIENTS:
                code, text = client.docmd("RCPT", f"TO:{rcpt}")
                assert f"{code} {text.decode()}" == INBOUND_REPLIES[rcpt], rcpt
            assert client.docmd("DATA")[0] == 503  # no valid recipient, no transaction
            client.rset()
    assert not InboundMessage.objects.exists()


def test_inbound_mx_only_stores_what_it_accepts_and_sends_nothing(inbound, domain):
    with smtplib.SMTP(*inbound, timeout=10) as client:
        client.ehlo("mx.elsewhere.example")
        client.mail("")
        assert client.rcpt(f"postmaster@{RP}")[0] == 250
        assert client.docmd("RCPT", "TO:<victim@elsewhere.example>") == (550, b"5.7.1 Relay denied")
        code, _ = client.data(b"From: x@elsewhere.example\r\nTo: victim@elsewhere.example\r\n\r\nhi\r\n")
        assert code == 250
    stored = InboundMessage.objects.get()
    assert stored.rcpt_to == [f"postmaster@{RP}"]
    # Reports are only ever classified: nothing becomes an outgoing message or delivery.
    assert not Message.objects.exists() and not Recipient.objects.exists()
