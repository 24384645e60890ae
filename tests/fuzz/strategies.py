"""Hypothesis strategies for hostile mail: header blocks, MIME trees and mutations of real samples, built from
the grammar's pieces (RFC 5322 fields, RFC 2045-2049 MIME, RFC 3464 DSN fields) plus the bytes that break
naive parsers (NUL, bare CR, invalid UTF-8, 8-bit in headers, very long lines)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "bounces").rglob("*.eml"))

NASTY = [
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"=?",
    b"?=",
    b"=?utf-8?b?",
    b"=?unknown-8bit?q?=FF?=",
    b"=?utf-8?q?=00?=",
    b"\t",
    b" ",
    b":",
    b";",
    b'"',
    b"\\",
    b"<",
    b">",
    b"@",
    b",",
    b"(",
    b")",
    b"--",
    b"boundary=",
    b'charset="x-unknown"',
    b"\x1b$B",
    b"A" * 5000,
]
HEADER_NAMES = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "Date",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "MIME-Version",
    "Reply-To",
    "Sender",
    "Received",
    "Return-Path",
    "Auto-Submitted",
    "X-Failed-Recipients",
    "Final-Recipient",
    "Original-Recipient",
    "Action",
    "Status",
    "Diagnostic-Code",
    "Feedback-Type",
    "X-Postwerk-Id",
    "List-Unsubscribe",
]
CONTENT_TYPES = [
    "text/plain",
    "text/html",
    "multipart/mixed",
    "multipart/alternative",
    "multipart/report; report-type=delivery-status",
    "multipart/report; report-type=feedback-report",
    "message/delivery-status",
    "message/feedback-report",
    "message/rfc822",
    "text/rfc822-headers",
    "application/octet-stream",
]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", "bogus"]

nasty = st.sampled_from(NASTY)
text_bytes = st.lists(st.one_of(nasty, st.binary(max_size=40), st.text(max_size=30).map(str.encode)), max_size=8).map(
    b"".join
)


@st.composite
def header_line(draw: st.DrawFn) -> bytes:
    name = draw(st.one_of(st.sampled_from(HEADER_NAMES), st.text(min_size=1, max_size=20)))
    value = draw(text_bytes)
    fold = draw(st.booleans())
    return name.encode("utf-8", "surrogateescape") + b": " + value + (b"\r\n\t" + draw(text_bytes) if fold else b"")


@st.composite
def mime_entity(draw: st.DrawFn, depth: int = 0) -> bytes:
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    headers = draw(st.lists(header_line(), max_size=4))
    encoding = draw(st.sampled_from(ENCODINGS))
    head = [f"Content-Type: {content_type}".encode(), f"Content-Transfer-Encoding: {encoding}".encode(), *headers]
    if content_type.startswith("multipart/") and depth < 4:
        boundary = draw(st.sampled_from([b"b1", b"=_x", b"", b'"q"', b"--", b"a" * 80]))
        head[0] += b'; boundary="' + boundary + b'"'
        parts = draw(st.lists(mime_entity(depth + 1), max_size=3))
        closing = draw(st.booleans())
        body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts) + (
            b"--" + boundary + b"--\r\n" if closing else b""
        )
    elif content_type.startswith("message/") and depth < 4:
        body = draw(st.one_of(mime_entity(depth + 1), st.lists(header_line(), max_size=6).map(b"\r\n".join)))
    else:
        body = draw(text_bytes)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["insert", "delete", "flip", "truncate"]))
        if action == "insert":
            data[at:at] = draw(st.one_of(nasty, header_line()))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 200))]
        elif action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        else:
            del data[at:]
    return bytes(data)


def nested(depth: int, kind: str = "multipart/mixed") -> bytes:
    """A MIME tree `depth` levels deep, each level one part of the one above."""
    if kind == "message/rfc822":
        return b"Content-Type: message/rfc822\r\n\r\n" * depth + b"Subject: deep\r\n\r\nbottom\r\n"
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    return head + b"Content-Type: text/plain\r\n\r\nbottom\r\n"


hostile_message = st.one_of(mutated_sample(), mime_entity(), st.lists(header_line(), max_size=10).map(b"\r\n".join))
