"""The Streams page: streams listed, a broadcast stream added by an owner (not a viewer), scheduled mail shown and
cancelled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sending.models import Recipient, RecipientState, Stream
from tests.dashboard.conftest import send

pytestmark = pytest.mark.django_db


def url(organization, name: str = "streams", *args: object) -> str:  # type: ignore[no-untyped-def]
    return reverse(f"dashboard:{name}", args=[organization.pk, *args])


def test_the_page_lists_streams_and_scheduled_mail_and_cancels_it(owner_client, organization, api):
    send_at = timezone.now() + timedelta(hours=3)
    sent = send(api, subject="Tomorrow's digest", send_at=send_at.isoformat())
    page = owner_client.get(url(organization))
    assert page.status_code == 200
    assert b"<code>transactional</code>" in page.content
    assert b"Tomorrow&#x27;s digest" in page.content
    assert send_at.strftime("%Y-%m-%d %H:%M:%S").encode() in page.content
    cancel = owner_client.post(url(organization, "scheduled_cancel", sent["id"]))
    assert cancel.status_code == 302
    assert Recipient.objects.get().state == RecipientState.CANCELLED
    assert b"No scheduled mail." in owner_client.get(url(organization)).content


def test_an_owner_adds_a_broadcast_stream_a_viewer_cannot(owner_client, organization, member, as_user):
    added = owner_client.post(url(organization, "stream_add"), {"name": "newsletter", "description": "Monthly"})
    assert added.status_code == 302
    assert Stream.objects.get(organization=organization, name="newsletter").kind == "broadcast"
    again = owner_client.post(url(organization, "stream_add"), {"name": "newsletter"})
    assert again.status_code == 400 and b"exists already" in again.content
    viewer = as_user(member("viewer"))
    assert viewer.post(url(organization, "stream_add"), {"name": "other"}).status_code == 403
    assert viewer.get(url(organization)).status_code == 200
