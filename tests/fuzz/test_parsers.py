"""Fuzzing the MIME and DSN parsers: the bounce classifier (inbound reports from anyone), the header parsing of
SMTP submissions and the dashboard's message view never raise, whatever the bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from dashboard.mime import message_parts
from mail.bounces.parse import parse_report
from mail.mime_limits import MAX_MIME_DEPTH, mime_depth, mime_too_deep
from mail.raw_message import from_addresses, normalize_newlines, parse_headers, remove_headers
from tests.fuzz.strategies import hostile_message, nested

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(hostile_message)
def test_bounce_classifier_never_raises(raw):
    report = parse_report(raw)
    report.to_dict()


@FUZZ
@given(hostile_message)
def test_submission_header_parsing_never_raises(raw):
    raw = normalize_newlines(raw)
    from_addresses(parse_headers(raw))
    assert remove_headers(raw, {"bcc"}).count(b"\r\n\r\n") >= 1


@FUZZ
@given(hostile_message)
def test_dashboard_message_view_never_raises(raw):
    message_parts(raw)


@pytest.mark.parametrize("kind", ["multipart/mixed", "message/rfc822"])
def test_mime_nesting_is_limited_where_mail_comes_in_and_the_accepted_depth_is_survived(kind):
    deepest_accepted = b"From: x@dest.example\r\nSubject: deep\r\n" + nested(MAX_MIME_DEPTH, kind)
    assert mime_depth(deepest_accepted) == MAX_MIME_DEPTH and not mime_too_deep(deepest_accepted)
    message_parts(deepest_accepted)
    assert from_addresses(parse_headers(deepest_accepted)) == ["x@dest.example"]
    for depth in (MAX_MIME_DEPTH + 1, 5000):
        assert mime_too_deep(b"From: x@dest.example\r\n" + nested(depth, kind))


@pytest.mark.parametrize("kind", ["multipart/mixed", "message/rfc822"])
def test_bounce_classifier_survives_any_depth(kind):
    # Inbound reports are not depth-checked: the classifier itself never raises.
    assert parse_report(b"From: x@dest.example\r\n" + nested(5000, kind)).type


def test_a_very_long_header_line_and_nul_bytes():
    raw = b"From: a@dest.example\r\nSubject: " + b"\x00\xff" * 600_000 + b"\r\n\r\nbody\x00\r\n"
    assert parse_report(raw).type
    message_parts(raw)
    assert from_addresses(parse_headers(raw)) == ["a@dest.example"]


def test_a_header_the_standard_library_cannot_parse_is_shown_raw():
    # Found by the fuzzer: the stdlib's address-list class raises AttributeError on a group ("Content-Type:" read
    # as a group name) where it expects a mailbox. The dashboard shows the value as written instead.
    raw = b"From: a@dest.example\r\nTo:Content-Type: multipart/report; boundary=x\r\nSubject: s\r\n\r\nbody\r\n"
    parts = message_parts(raw)
    assert parts.headers == [
        ("From", "a@dest.example"),
        ("To", "Content-Type: multipart/report; boundary=x"),
        ("Subject", "s"),
    ]
    assert parts.text == "body\r\n"
