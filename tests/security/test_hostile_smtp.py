"""Regression tests for what fuzzing found at SMTP intake: a malformed MAIL FROM is 5.1.7 (not 5.1.3), a From
header the email package cannot parse is refused for good (550 5.6.0, never a temporary 451), and MIME nested
past the limit is refused (554 5.6.0); nothing is stored in any of these cases."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from mail.mime_limits import MAX_MIME_DEPTH
from sending.models import Message
from tests.fuzz.strategies import nested

pytestmark = pytest.mark.django_db(transaction=True)


def logged_in(server, credential) -> smtplib.SMTP:  # type: ignore[no-untyped-def]
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client = smtplib.SMTP(*server.bound["submission"], timeout=20)
    client.ehlo("client.example")
    client.starttls(context=context)
    client.ehlo("client.example")
    client.login(*credential)
    return client


def test_malformed_sender_is_5_1_7(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    assert client.docmd("MAIL", "FROM:<a@b@c>") == (553, b"5.1.7 Bad sender address syntax")
    assert client.docmd("RCPT", "TO:<a@b@c>")[0] == 503  # no transaction
    client.quit()


@pytest.mark.parametrize(
    "from_header",
    # Found by tests/fuzz/test_parsers.py: the email package raises AttributeError on a group with 8-bit bytes.
    [b"From: x: \xa6>;}", b"From: From: \xa6>;)}\xc2\x88\xc3(ki\xc2\xab,\xf4\x82\x84\xa3", b"From: (\xff\x00@"],
)
def test_unparseable_from_header_is_550_never_451(smtp_server, credential, from_header):
    client = logged_in(smtp_server, credential)
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    code, text = client.data(from_header + b"\r\nSubject: x\r\n\r\nbody\r\n")
    assert code == 550 and text.startswith(b"5."), (code, text)
    client.quit()
    assert not Message.objects.exists()


def test_mime_nested_past_the_limit_is_554(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    for depth, expected in ((MAX_MIME_DEPTH + 1, 554), (MAX_MIME_DEPTH, 250)):
        client.mail("app@acme.example")
        client.rcpt("jane@dest.example")
        code, text = client.data(b"From: app@acme.example\r\nTo: jane@dest.example\r\n" + nested(depth))
        assert code == expected, (depth, code, text)
    client.quit()
    assert Message.objects.count() == 1
