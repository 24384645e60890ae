"""Fuzzing the SMTP submission listener over a real socket with sessions drawn from the command grammar
(RFC 5321 §4.1 verbs and ESMTP parameters, the address forms of §4.1.2, hostile bytes), before and after AUTH:
every command gets one well-formed reply with an enhanced status (RFC 2034), hostile content is refused with a
5xx and never a temporary 451, the server survives every session, and nothing is stored half-way."""

from __future__ import annotations

import re
import smtplib
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sending.models import Message
from sending.smtp import auth_limits
from tests.fuzz.strategies import hostile_message, mime_entity, nested

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ = settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REPLY = re.compile(rb"^[2-5]\d\d$")
ENHANCED = re.compile(rb"^([245])\.\d{1,3}\.\d{1,3}( |$)")
# No enhanced code by design: greeting, EHLO/HELO, AUTH challenge, DATA go-ahead (RFC 2034 §3).
EXEMPT = {220, 334, 354}

no_newlines = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
local = st.one_of(
    st.sampled_from([b"app", b"jane", b"a.b", b'"quoted@local"', b"x%y", b"bang!path", b"", b"\xc3\xa9t\xc3\xa9"]),
    no_newlines,
)
domain = st.one_of(
    st.sampled_from([b"acme.example", b"dest.example", b"[127.0.0.1]", b"[IPv6:::1]", b"xn--bcher-kva.example", b""]),
    no_newlines,
)
address = st.one_of(
    st.builds(lambda lp, d: b"<" + lp + b"@" + d + b">", local, domain),
    st.sampled_from([b"<>", b"<@acme.example:x@dest.example>", b"jane@dest.example", b"<jane@dest.example", b"<<>>"]),
    no_newlines,
)
params = st.lists(
    st.sampled_from(
        [
            b"SIZE=100",
            b"SIZE=999999999999",
            b"SIZE=x",
            b"BODY=8BITMIME",
            b"BODY=BINARYMIME",
            b"SMTPUTF8",
            b"RET=FULL",
            b"NOTIFY=NEVER",
            b"AUTH=<>",
            b"X=" + b"y" * 600,
        ]
    ),
    max_size=3,
).map(lambda ps: b"".join(b" " + p for p in ps))

command = st.one_of(
    st.builds(lambda a, p: b"MAIL FROM:" + a + p, address, params),
    st.builds(lambda a, p: b"RCPT TO:" + a + p, address, params),
    st.just(b"MAIL FROM:<app@acme.example>"),
    st.just(b"RCPT TO:<jane@dest.example>"),
    st.just(b"DATA"),
    st.sampled_from(
        [
            b"RSET",
            b"NOOP",
            b"HELP",
            b"VRFY jane",
            b"EXPN list",
            b"BDAT 10 LAST",
            b"TURN",
            b"ETRN x",
            b"EHLO",
            b"HELO",
            b"EHLO client.example",
            b"AUTH",
            b"AUTH PLAIN",
            b"AUTH PLAIN =",
            b"AUTH CRAM-MD5",
            b"AUTH PLAIN AGZvbwBiYXI=",
            b"MAIL",
            b"RCPT",
            b"MAIL FROM",
            b"DATA x",
            b"\x00",
            b"",
            b" ",
            b"mail from:<app@acme.example>",
            b"A" * 2000,
        ]
    ),
    st.builds(
        lambda verb, arg: verb + b" " + arg, st.sampled_from([b"EHLO", b"HELO", b"NOOP", b"AUTH LOGIN"]), no_newlines
    ),
    no_newlines,
)
body = st.one_of(
    hostile_message,
    st.builds(lambda m: b"From: App <app@acme.example>\r\nTo: jane@dest.example\r\n" + m, mime_entity()),
    st.just(b"From: app@acme.example\r\nSubject: deep\r\n" + nested(150)),
)


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def well_formed(code: int, text: bytes, verb: bytes) -> bool:
    if not REPLY.match(str(code).encode()):
        return False
    if code in EXEMPT or verb.upper().startswith((b"EHLO", b"HELO")):
        return True
    match = ENHANCED.match(text)
    return bool(match) and match.group(1) == str(code)[0].encode()


def dot_stuffed(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    lines = [b"." + line if line.startswith(b".") else line for line in data.split(b"\r\n")]
    return b"\r\n".join(lines) + b"\r\n.\r\n"


@FUZZ
@given(
    authenticated=st.booleans(),
    commands=st.lists(command, min_size=1, max_size=12),
    data=st.lists(body, min_size=3, max_size=3),
)
def test_every_command_is_answered_and_nothing_half_stored(smtp_server, credential, authenticated, commands, data):
    auth_limits.reset("127.0.0.1", credential[0])
    host, port = smtp_server.bound["submission"]
    client = smtplib.SMTP(host, port, timeout=20)
    client.ehlo("fuzz.example")
    if authenticated:
        client.starttls(context=_unverified())
        client.ehlo("fuzz.example")
        client.user, client.password = credential
        assert client.auth("PLAIN", client.auth_plain)[0] == 235
    bodies = iter(data * len(commands))
    closed = False
    for line in commands:
        client.send(line + b"\r\n")
        try:
            code, text = client.getreply()
        except smtplib.SMTPServerDisconnected:
            closed = True
            break
        assert well_formed(code, text, line), (line[:80], code, text)
        if code == 354:
            client.send(dot_stuffed(next(bodies)))
            code, text = client.getreply()
            assert well_formed(code, text, b"DATA"), (code, text)
            # A 451 would mean an exception on our side (a crash turned into "try again"): hostile content
            # must be refused for good, or accepted.
            assert code != 451, text
        if code == 421:
            closed = True
            break
    if not closed:
        client.send(b"QUIT\r\n")
        assert client.getreply()[0] == 221
    client.close()
    # The server still serves, and every stored message is whole.
    with smtplib.SMTP(host, port, timeout=20) as probe:
        assert probe.noop()[0] == 250
    for message in Message.objects.all():
        assert message.raw and message.recipients.exists()
