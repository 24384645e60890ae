"""The held messages page: filters, the dry run's count, release and cancel in bulk, scoped and permitted."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sending.models import Event, EventType, Recipient, RecipientState
from sending.reputation.rates import reputation_resume
from tests.conftest import add_mx_domain, deliver_queued
from tests.dashboard.conftest import pause, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(api, organization, zone, mx) -> dict:  # type: ignore[no-untyped-def]
    """Three messages held while the organization was paused, then resumed (so they may be released)."""
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    rep = pause(organization)
    for address, tag in (("a1@dest.example", "news"), ("a2@dest.example", "news"), ("b1@dest.example", "order")):
        send(api, to=[address], tags=[tag], subject=f"For {address}")
    assert set(Recipient.objects.values_list("state", flat=True)) == {RecipientState.HELD}
    return {"rep": rep, "sink": sink}


def states() -> dict[str, str]:
    return dict(Recipient.objects.values_list("address", "state"))


def url(organization, name: str = "held") -> str:  # type: ignore[no-untyped-def]
    return reverse(f"dashboard:{name}", args=[organization.pk])


def test_the_page_lists_and_filters_held_mail(owner_client, organization, held):
    page = owner_client.get(url(organization))
    assert page.status_code == 200 and page.context["total"] == 3
    assert b"a1@dest.example" in page.content and b"paused" in page.content
    news = owner_client.get(url(organization), {"tag": "news"})
    assert news.context["total"] == 2 and b"b1@dest.example" not in news.content
    assert owner_client.get(url(organization), {"address": "b1@"}).context["total"] == 1
    assert owner_client.get(url(organization), {"held_reason": "send_limit"}).context["total"] == 0


def test_release_shows_the_dry_run_count_then_delivers(owner_client, organization, held):
    reputation_resume(held["rep"], actor="user:ops", reason="list cleaned", staff=True)
    dry = owner_client.post(f"{url(organization, 'held_release')}?tag=news")
    assert dry.status_code == 200 and dry.context["pending"]["count"] == 2
    assert b"Release 2 held recipients?" in dry.content and b"Confirm: release 2" in dry.content
    assert set(states().values()) == {"held"}  # the dry run changed nothing

    done = owner_client.post(f"{url(organization, 'held_release')}?tag=news", {"confirm": "on"})
    assert done.status_code == 302 and done["Location"].endswith("?tag=news")
    assert states() == {"a1@dest.example": "queued", "a2@dest.example": "queued", "b1@dest.example": "held"}
    assert Event.objects.get(type=EventType.RELEASED, recipient__address="a1@dest.example").details["actor"] == (
        "user:owner"
    )
    deliver_queued()
    assert sorted(m.rcpt_tos[0] for m in held["sink"].messages) == ["a1@dest.example", "a2@dest.example"]
    assert b"2 held recipients released" in owner_client.get(done["Location"]).content


def test_a_still_paused_scope_keeps_its_mail_and_the_dry_run_says_so(owner_client, organization, held):
    dry = owner_client.post(url(organization, "held_release"))
    assert dry.context["pending"] == {"action": "release", "verb": "Release", "count": 0, "matching": 3, "kept": 3}
    assert b"still paused" in dry.content and b"Confirm:" not in dry.content
    owner_client.post(url(organization, "held_release"), {"confirm": "on"})
    assert set(states().values()) == {"held"}


def test_cancel_after_its_dry_run(owner_client, organization, held):
    dry = owner_client.post(f"{url(organization, 'held_cancel')}?tag=order")
    assert dry.context["pending"]["count"] == 1 and b"cannot be undone" in dry.content
    owner_client.post(f"{url(organization, 'held_cancel')}?tag=order", {"confirm": "on"})
    assert states()["b1@dest.example"] == "cancelled"
    deliver_queued()
    assert held["sink"].messages == []


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_developers_and_viewers_see_held_mail_but_cannot_act(role, member, as_user, organization, held):
    client = as_user(member(role))
    page = client.get(url(organization))
    assert page.status_code == 200 and page.context["total"] == 3
    assert b"Release all" not in page.content and b"Cancel all" not in page.content
    assert client.post(url(organization, "held_cancel"), {"confirm": "on"}).status_code == 403
    assert set(states().values()) == {"held"}


def test_another_organizations_held_mail_is_neither_listed_nor_touched(owner_client, organization, other, held):
    from sending.models import Message

    message = Message.objects.get(organization=other["org"])
    Recipient.objects.create(
        message=message,
        organization=other["org"],
        address="x@globex.example",
        domain="globex.example",
        state=RecipientState.HELD,
        held_reason="send_limit",
    )
    assert owner_client.get(url(organization)).context["total"] == 3
    owner_client.post(url(organization, "held_cancel"), {"confirm": "on"})
    assert Recipient.objects.get(address="x@globex.example").state == RecipientState.HELD
    # Another organization's key as a filter is not a valid choice.
    assert owner_client.get(url(organization), {"api_key": other["api_key"].pk}).status_code == 400
    refused = owner_client.post(f"{url(organization, 'held_cancel')}?api_key={other['api_key'].pk}", {"confirm": "on"})
    assert refused.status_code == 400


def test_overview_points_at_held_mail_and_the_paused_scope(owner_client, organization, held):
    page = owner_client.get(reverse("dashboard:overview", args=[organization.pk]))
    text = page.content.decode()
    assert "3 recipients held" in text and "See held messages" in text
    assert "Sending is paused for the organization" in text and "bounces from a bought list" in text
