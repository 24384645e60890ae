"""The composer's direct path for simple messages gives the same bytes as the email package would."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mail.addresses import parse_mailbox
from sending.intake import composer
from sending.intake.composer import Draft, build_message

DATE = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
BOUNDARY = re.compile(rb"={15}\d{19}==")


def both(draft: Draft) -> tuple[bytes | None, bytes]:
    fast = composer._build_simple(draft, message_id="<1@x.example>", date=DATE)
    slow = composer._build_with_email_package(draft, message_id="<1@x.example>", date=DATE)
    if fast is not None:
        fast = BOUNDARY.sub(b"BOUNDARY", fast)
    return fast, BOUNDARY.sub(b"BOUNDARY", slow)


def draft(**kwargs) -> Draft:  # type: ignore[no-untyped-def]
    base = {"sender": parse_mailbox("Bench Shop <orders@shop.example>"), "to": [parse_mailbox("a@dest.example")]}
    return Draft(**{**base, **kwargs})


def test_the_common_shapes_take_the_direct_path_and_match():
    for d in [
        draft(subject="Your order #100001 has shipped", text="Hello\nthere\n"),
        draft(subject="Hi", html="<p>Hi</p>"),
        draft(subject="Hi", text="Hello", html="<p>Hello</p>"),
        draft(subject="", text=""),
        draft(subject="Hi", html=None, text=None),
        draft(
            subject="Hi",
            text="a\r\nb\rc\n\n\n",
            cc=[parse_mailbox("Cee <c@dest.example>")],
            reply_to=[parse_mailbox("r@shop.example")],
            headers={"X-Campaign": "spring 2026", "List-Unsubscribe": "<mailto:u@shop.example>"},
        ),
    ]:
        fast, slow = both(d)
        assert fast is not None, d
        assert fast == slow


def test_long_ascii_lines_take_the_direct_path_as_quoted_printable_like_the_email_package():
    """A rendered template's HTML has lines over 78 characters (a tag's long style attribute cannot be broken):
    they are quoted-printable, as the email package would write them, for few lines and for many."""
    row = '<td style="padding: 4px 8px;border-bottom: 1px solid #ddd;color: #224488;font-weight: bold;">x</td>'
    for d in [
        draft(subject="Hi", text="x" * 79),
        draft(subject="Hi", html=row),
        draft(subject="Hi", text="short\n" + "y " * 50, html="\n".join([row] * 30) + "\n"),
        draft(subject="Hi", text="a=b " * 30 + " \t\n" + "a" * 77 + " \n" + "c" * 76 + "\t\n"),
    ]:
        fast, slow = both(d)
        assert fast is not None, d
        assert b"Content-Transfer-Encoding: quoted-printable\r\n" in fast
        assert fast == slow


def test_a_body_the_email_package_would_write_in_base64_goes_through_it():
    d = draft(subject="Hi", text="=" * 100 + "\x01" * 100)
    assert composer._build_simple(d, message_id="<1@x.example>", date=DATE) is None
    assert b"base64" in build_message(d, message_id="<1@x.example>", date=DATE)


def test_what_needs_encoding_or_folding_goes_through_the_email_package():
    for d in [
        draft(subject="Grüße", text="x"),
        draft(subject="x" * 80, text="x"),
        draft(subject="Hi", text="ä"),
        draft(subject="=?utf-8?q?x?=", text="x"),
        draft(sender=parse_mailbox('"Doe, Jane" <j@shop.example>'), subject="Hi", text="x"),
        draft(subject="two  spaces", text="x"),
    ]:
        assert composer._build_simple(d, message_id="<1@x.example>", date=DATE) is None, d
        assert build_message(d, message_id="<1@x.example>", date=DATE)


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90)
bodies = st.lists(st.sampled_from([*"ab <>=.\r\n\t \x0b\x01", "x" * 40, "=" * 30, "\u00e9"]), max_size=60).map("".join)
names = st.sampled_from(["", "Jo", "Jo Bloggs", "A.B", "x=?y", "O'Neil", "a  b", " lead", "Über"])


@settings(max_examples=300, deadline=None)
@given(subject=printable, text=st.none() | bodies, html=st.none() | bodies, name=names, header=printable)
def test_the_direct_path_matches_the_email_package_whenever_it_is_taken(subject, text, html, name, header):
    sender = parse_mailbox(f'"{name}" <o@shop.example>' if name else "o@shop.example")
    headers = {"X-Note": header} if header.strip() else {}
    d = draft(sender=sender, subject=subject, text=text, html=html, headers=headers)
    try:
        slow = composer._build_with_email_package(d, message_id="<1@x.example>", date=DATE)
    except composer.HeaderError:
        return  # refused either way: build_message checks before both paths
    fast = composer._build_simple(d, message_id="<1@x.example>", date=DATE)
    if fast is not None:
        assert BOUNDARY.sub(b"B", fast) == BOUNDARY.sub(b"B", slow)
