"""Header folding that keeps plain ASCII plain, and the trace headers Postwerk adds. Pure: no database."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from mail import wire_policy
from mail.trace_headers import SmtpTrace, feedback_id, received_header, with_feedback_id
from mail.wire_policy import fold_plain

URL = "<https://track.acme.example/t/u/" + "Ab0_-" * 30 + ":1kXyZ9:" + "q" * 43 + ">"


def unfolded(folded: str) -> str:
    return folded.removesuffix("\r\n").replace("\r\n", "")


@settings(max_examples=500, deadline=None)
@given(
    name=st.sampled_from(["List-Unsubscribe", "X-Note", "Subject", "X-A-Rather-Long-Header-Name-For-Folding"]),
    value=st.lists(
        st.sampled_from(["a", "word", "x" * 77, "y" * 200, URL, " ", "  ", "\t", "=", "?", "<>", ";"]), max_size=40
    ).map("".join),
)
def test_folding_gives_back_the_value_and_never_encodes_it(name, value):
    folded = fold_plain(name, value)
    if folded is None:  # only a word that alone runs past RFC 5322's 998 cannot go as it is
        assert any(len(name) + 2 + len(word) > 998 for word in value.split()) or "=?" in value
        return
    assert folded.endswith("\r\n")
    assert unfolded(folded) == f"{name}: {value}"
    lines = folded[:-2].split("\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert all(line[0] in " \t" and line.strip() for line in lines[1:])  # continuations, never blank
    # A line runs past 78 only when it is one word that cannot be broken.
    for i, line in enumerate(lines):
        assert len(line) <= 78 or len((line[len(name) + 1 :] if i == 0 else line).split()) == 1


def test_a_long_url_stays_one_plain_line_where_python_would_encode_it():
    stock = EmailMessage(policy=policy.SMTP)
    stock["List-Unsubscribe"] = URL
    assert b"=?utf-8?q?" in stock.as_bytes()  # the bug: the one-click URL hidden in RFC 2047 words

    msg = EmailMessage(policy=wire_policy.SMTP)
    msg["List-Unsubscribe"] = URL
    msg["X-Note"] = "spring " * 20 + "y" * 100
    msg["Subject"] = "Grüße " + "x" * 90  # non-ASCII: encoded words are the only way, as before
    raw = msg.as_bytes()
    assert raw.startswith(f"List-Unsubscribe: {URL}\r\nX-Note: spring spring".encode())
    note = raw.split(b"X-Note: ")[1].split(b"\r\nSubject:")[0]
    assert note.replace(b"\r\n", b"").decode() == "spring " * 20 + "y" * 100
    assert all(len(line) <= 78 for line in note.split(b"\r\n")[:-1])
    assert b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe" in raw


def test_source_headers_are_written_as_they_came():
    raw = f"Subject: t\r\nX-Token: {'z' * 120}\r\nList-Id: a\r\n  b\r\n\r\nbody\r\n".encode()
    msg = message_from_bytes(raw, _class=EmailMessage, policy=wire_policy.SMTP)
    assert msg.as_bytes() == raw
    assert message_from_bytes(raw, _class=EmailMessage, policy=policy.SMTP).as_bytes() != raw  # refolded


def test_received_header_names_the_client_and_stays_within_78_columns():
    when = datetime(2026, 12, 7, 17, 19, 36, tzinfo=UTC)
    trace = SmtpTrace(helo="client.example", ip="127.0.0.1", esmtp=True, tls=True, authenticated=True)
    queue_id = "019aefb0-1234-7abc-8def-0123456789ab"
    header = received_header(trace, by="mta.postwerk.example", queue_id=queue_id, when=when)
    assert header == (
        b"Received: from client.example ([127.0.0.1])\r\n"
        b" by mta.postwerk.example with ESMTPSA id 019aefb0-1234-7abc-8def-0123456789ab;\r\n"
        b" Mon, 07 Dec 2026 17:19:36 +0000\r\n"
    )
    hostile = SmtpTrace(helo="x\r\nBcc: a@b (", ip="::1", esmtp=True, tls=False, authenticated=False)
    header = received_header(hostile, by="mta.postwerk.example", queue_id="1", when=when, smtputf8=True)
    assert header.startswith(b"Received: from [IPv6:::1]\r\n by mta.postwerk.example with UTF8SMTP id 1;\r\n")
    helo = SmtpTrace(helo="old.example", ip="127.0.0.9", esmtp=False, tls=False, authenticated=False)
    assert b" with SMTP id 1;" in received_header(helo, by="m.example", queue_id="1", when=when)


def test_feedback_id_fields_are_safe_and_the_senders_own_wins():
    assert feedback_id(tags=[], organization_id=7, domain="acme.example") == "default:7:acme.example:postwerk"
    value = feedback_id(tags=["Spring sale: 50% off/" + "x" * 90, "other"], organization_id=7, domain="acme.example")
    campaign = value.split(":")[0]
    assert value.endswith(":7:acme.example:postwerk") and value.count(":") == 3
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", campaign) and campaign.startswith("Spring-sale-50-off-x")
    raw = b"From: a@acme.example\r\nSubject: s\r\n\r\nFeedback-ID: in the body\r\n"
    assert with_feedback_id(raw, "a:1:b:postwerk") == b"Feedback-ID: a:1:b:postwerk\r\n" + raw
    own = b"From: a@acme.example\r\nfeedback-id : mine:1:x:app\r\n\r\nbody\r\n"
    assert with_feedback_id(own, "a:1:b:postwerk") == own
