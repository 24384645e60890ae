"""Overview notes for send limits reached or near; message pages for bodies purged by retention and for MIME
nested too deep to parse."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.mime import message_parts
from sending.models import Message
from sending.operations.retention import retention_purge
from tests.conftest import deliver_queued
from tests.dashboard.conftest import send

pytestmark = pytest.mark.django_db


def overview(client, organization) -> str:  # type: ignore[no-untyped-def]
    return client.get(reverse("dashboard:overview", args=[organization.pk])).content.decode()


# --- send limits ------------------------------------------------------------------------------------------


def test_a_reached_hourly_limit_needs_attention_and_points_at_held_mail(owner_client, organization, api):
    organization.hourly_limit = 2
    organization.save()
    for _ in range(3):
        send(api)  # the third is over the limit: held (the default action)
    page = overview(owner_client, organization)
    assert "Send limit reached: 2 of 2 messages this hour. New mail is held until" in page
    assert "See held mail" in page


def test_a_limit_near_its_end_is_a_note_and_refusing_organizations_are_told_so(owner_client, organization, api):
    organization.daily_limit = 10
    organization.limit_action = "reject"
    organization.save()
    for _ in range(9):
        send(api)
    assert "Near the send limit: 9 of 10 messages today" in overview(owner_client, organization)
    send(api)
    page = overview(owner_client, organization)
    assert "Send limit reached: 10 of 10 messages today. New mail is refused until" in page


def test_no_limit_no_note(owner_client, organization, api):
    send(api)
    assert "send limit" not in overview(owner_client, organization).lower()


# --- purged bodies ----------------------------------------------------------------------------------------


@pytest.fixture
def purged(api, zone, mx, settings, organization) -> Message:  # type: ignore[no-untyped-def]
    """A message delivered to a loopback MX, then its body purged by a real retention pass."""
    from tests.conftest import add_mx_domain

    settings.POSTWERK_RETENTION_RAW_DAYS = 7
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sent = send(api, subject="Old order")
    deliver_queued()
    report = retention_purge(now=timezone.now() + timedelta(days=8))
    assert report.bodies_purged == 1
    message = Message.objects.get(pk=sent["id"])
    assert message.size > 0 and bytes(message.raw) == b""
    return message


@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_a_purged_body_says_so_instead_of_an_empty_preview(role, member, as_user, organization, purged):
    client = as_user(member(role))
    page = client.get(reverse("dashboard:message", args=[organization.pk, purged.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Body purged after 7 days." in body and "Old order" in body
    assert "iframe" not in body and "Download the raw source" not in body
    assert "jane@dest.example" in body  # recipients and their timelines stay
    for name in ("message_source", "message_html"):
        gone = client.get(reverse(f"dashboard:{name}", args=[organization.pk, purged.pk]))
        assert gone.status_code == 410 and b"purged after 7 days" in gone.content


# --- deeply nested MIME -----------------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    """A multipart/mixed `levels` deep with a text part at the bottom (the fuzzers' RecursionError shape)."""
    head = [b"From: a@acme.example", b"To: b@dest.example", b"Subject: Deep", b"MIME-Version: 1.0"]
    lines, closing = [], []
    for n in range(levels):
        lines += [f'Content-Type: multipart/mixed; boundary="b{n}"'.encode(), b"", f"--b{n}".encode()]
        closing.insert(0, f"--b{n}--".encode())
    lines += [b"Content-Type: text/plain", b"", b"bottom"]
    return b"\r\n".join(head + lines + closing) + b"\r\n"


def test_mime_nested_five_thousand_deep_is_not_parsed():
    parts = message_parts(nested(5000))
    assert parts.too_deep and parts.text is None and parts.html is None
    assert ("Subject", "Deep") in parts.headers


def test_an_address_header_the_email_package_cannot_parse_is_shown_as_sent():
    # policy.default raises IndexError on `x <` (found by the dashboard fuzz test): the page shows the raw value.
    parts = message_parts(b"From: a@example.test\r\nTo: x <\r\nSubject: hi\r\n\r\nbody\r\n")
    assert parts.headers == [("From", "a@example.test"), ("To", "x <"), ("Subject", "hi")]
    assert parts.text == "body\r\n"


def test_mime_at_a_normal_depth_is_parsed():
    parts = message_parts(nested(20))
    assert not parts.too_deep and parts.text is not None and parts.text.strip() == "bottom"


def test_the_message_page_shows_a_deep_message_as_too_deeply_nested(owner_client, organization, domain):
    raw = nested(5000)
    message = Message.objects.create(
        organization=organization,
        domain=domain,
        message_id="<deep@acme.example>",
        mail_from="a@acme.example",
        subject="Deep",
        raw=raw,
        size=len(raw),
    )
    page = owner_client.get(reverse("dashboard:message", args=[organization.pk, message.pk]))
    assert page.status_code == 200 and b"Too deeply nested to display." in page.content
    html = owner_client.get(reverse("dashboard:message_html", args=[organization.pk, message.pk]))
    assert html.status_code == 404
    source = owner_client.get(reverse("dashboard:message_source", args=[organization.pk, message.pk]))
    assert source.status_code == 200 and source.content == raw
