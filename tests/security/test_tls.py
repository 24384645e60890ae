"""TLS: the listeners speak only TLS 1.2 and later; outbound delivery records whether TLS was used and what a
verifying client would have concluded of the MX host's certificate, and still delivers when it would not."""

from __future__ import annotations

import smtplib
import socket
import ssl
import warnings

import pytest

from mail.smtp_client import open_to_host
from mail.tls_verify import verify_chain
from sending.models import Event, EventType, Recipient, RecipientState
from sending.smtp.server import tls_context
from tests.conftest import add_mx_domain, deliver_queued
from tests.security.pki import make_ca, make_leaf
from tests.servers import make_self_signed

MX_NAME = "mx1.dest.example"


def client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: that is the point
        context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        # Without this OpenSSL 3 would not even offer TLS 1.1, and the test would prove nothing about the server.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def starttls(server, context: ssl.SSLContext) -> str:
    host, port = server.bound["submission"]
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.ehlo("client.example")
        client.starttls(context=context)
        return client.sock.version()


def implicit_tls(server, context: ssl.SSLContext) -> str:
    host, port = server.bound["submissions"]
    with socket.create_connection((host, port), timeout=10) as raw, context.wrap_socket(raw) as sock:
        assert sock.recv(1024).startswith(b"220")
        return sock.version()


def test_listener_context_requires_tls_1_2(settings, tmp_path):
    settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY = make_self_signed(tmp_path, "smtp.example")
    assert tls_context().minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("connect", [starttls, implicit_tls], ids=["starttls", "implicit"])
def test_tls_1_1_is_refused_and_1_2_and_1_3_accepted(smtp_server, connect):
    with pytest.raises((ssl.SSLError, ConnectionError, smtplib.SMTPServerDisconnected)):
        connect(smtp_server, client_context(ssl.TLSVersion.TLSv1_1))
    assert connect(smtp_server, client_context(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert connect(smtp_server, client_context(ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"


# --- outbound: what delivery records ------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path, monkeypatch):
    """A CA the process trusts (SSL_CERT_FILE, as for any OpenSSL client) and a function to issue leaves."""
    ca, ca_key, ca_file = make_ca(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)

    def issue(hostname: str = MX_NAME, **kwargs: object) -> tuple[str, str]:
        return make_leaf(tmp_path, ca, ca_key, hostname, **kwargs)

    return issue


def session_to(host: str = "127.0.0.2"):  # type: ignore[no-untyped-def]
    session, reply = open_to_host(MX_NAME, [host], connect_timeout=3, command_timeout=5)
    assert session is not None, reply
    return session


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ({}, "verified"),
        ({"hostname": "other.example"}, "failed:"),
        ({"expired": True}, "failed:"),
    ],
    ids=["valid", "wrong-name", "expired"],
)
def test_session_records_the_certificate_verification_result(pki, mx, leaf, expected):
    mx("127.0.0.2", tls_cert=pki(**leaf))
    session = session_to()
    try:
        assert session.tls is True
        assert session.tls_verification.startswith(expected), session.tls_verification
    finally:
        session.close()


def test_untrusted_self_signed_certificate_is_failed_but_encrypted(pki, mx, tmp_path):
    mx("127.0.0.2", tls_cert=make_self_signed(tmp_path / "self", MX_NAME))
    session = session_to()
    try:
        assert (session.tls, session.tls_verification[:7]) == (True, "failed:")
    finally:
        session.close()


def test_no_starttls_is_none(mx):
    mx("127.0.0.2")
    session = session_to()
    try:
        assert (session.tls, session.tls_verification) == (False, "none")
    finally:
        session.close()


def test_verify_chain_without_certificate_fails():
    assert verify_chain([], MX_NAME) == "failed: no certificate presented"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("leaf_name", "expected"), [(MX_NAME, "verified"), ("other.example", "failed:")], ids=["verified", "failed"]
)
def test_delivery_event_records_tls_and_verification_and_still_delivers(
    api, zone, mx, domain, pki, leaf_name, expected
):
    sink = mx("127.0.0.2", tls_cert=pki(leaf_name))
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    response = api.post(
        "/api/v1/messages",
        {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hello"},
        format="json",
    )
    assert response.status_code == 202, response.content
    deliver_queued()
    assert sink.messages[0].tls is True
    recipient = Recipient.objects.get()
    assert (recipient.state, recipient.tls) == (RecipientState.DELIVERED, True)
    details = Event.objects.get(type=EventType.DELIVERED).details
    assert details["tls"] is True
    assert details["tls_verification"].startswith(expected), details
