"""GET /api/v1/events: the organization's event stream, filtered and cursor-paginated, with sequence numbers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import api_key_create, organization_get_or_create
from sending.models import Event, EventType
from tests.conftest import add_mx_domain, deliver_queued

pytestmark = pytest.mark.django_db


def send(api, to, **extra):
    body = {"from": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hello", **extra}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def events(api, **params):
    response = api.get("/api/v1/events", params)
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def history(api, zone, mx):
    """Two messages: one delivered to two recipients (tagged), one bounced."""
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"gone@dest.example": "550 5.1.1 No such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    first = send(api, ["a@dest.example", "b@dest.example"], tags=["order"], metadata={"order_id": "7"})
    second = send(api, ["gone@dest.example"], tags=["welcome"])
    deliver_queued()
    return first, second


def test_lists_every_event_newest_first_in_the_webhook_shape(api, history):
    first, _ = history
    body = events(api)
    results = body["results"]
    # 3 recipients x (queued, sent, delivered|bounced), after the domain's verification events.
    assert {e["type"] for e in results[-2:]} == {"domain.dkim_key_activated", "domain.verified"}
    results = results[:-2]
    assert len(results) == 9
    assert [int(e["id"]) for e in results] == sorted((int(e["id"]) for e in results), reverse=True)
    delivered = next(e for e in results if e["type"] == "delivered" and e["recipient"] == "a@dest.example")
    assert delivered["message_id"] == first["id"]
    assert delivered["recipient_id"] == first["recipients"][0]["id"]
    assert (delivered["tags"], delivered["metadata"]) == (["order"], {"order_id": "7"})
    assert delivered["details"]["smtp"]["code"] == 250 and delivered["timestamp"].endswith("Z")
    bounced = next(e for e in results if e["type"] == "bounced")
    assert bounced["details"]["kind"] == "hard" and bounced["details"]["reason"] == "user_unknown"
    # Each delivery's events are numbered in the order they happened.
    by_recipient = {}
    for e in sorted(results, key=lambda e: int(e["id"])):
        by_recipient.setdefault(e["recipient"], []).append((e["sequence"], e["type"]))
    assert by_recipient["a@dest.example"] == [(1, "queued"), (2, "sent"), (3, "delivered")]
    assert by_recipient["gone@dest.example"] == [(1, "queued"), (2, "sent"), (3, "bounced")]


def test_filters_by_type_recipient_message_tag_and_time(api, history):
    first, second = history
    assert {e["type"] for e in events(api, type="delivered,bounced")["results"]} == {"delivered", "bounced"}
    assert len(events(api, type="delivered,bounced")["results"]) == 3
    by_address = events(api, recipient="B@dest.example")["results"]
    assert {e["recipient"] for e in by_address} == {"b@dest.example"} and len(by_address) == 3
    by_id = events(api, recipient=second["recipients"][0]["id"])["results"]
    assert {e["recipient"] for e in by_id} == {"gone@dest.example"}
    assert {e["message_id"] for e in events(api, message=first["id"])["results"]} == {first["id"]}
    assert {e["recipient"] for e in events(api, tag="welcome")["results"]} == {"gone@dest.example"}
    assert events(api, since=(timezone.now() + timedelta(minutes=1)).isoformat())["results"] == []
    assert len(events(api, until=(timezone.now() + timedelta(minutes=1)).isoformat())["results"]) == 11

    bad = api.get("/api/v1/events", {"type": "nope"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid" and "type" in bad.json()["fields"]
    assert api.get("/api/v1/events", {"message": "x"}).status_code == 400
    assert api.get("/api/v1/events", {"since": "yesterday"}).status_code == 400


def test_cursor_pagination_walks_every_event_once(api, history):
    seen, url = [], "/api/v1/events?page_size=4"
    while url:
        page = api.get(url).json()
        seen.extend(e["id"] for e in page["results"])
        url = page["next"]
    assert len(seen) == len(set(seen)) == Event.objects.count() == 11


def test_other_organizations_events_are_invisible(api, history, domain):
    other, _ = organization_get_or_create(name="Other")
    foreign = Event.objects.create(organization=other, type=EventType.QUEUED, details={})
    assert foreign.pk not in {int(e["id"]) for e in events(api)["results"]}
    assert api.get(f"/api/v1/events/{foreign.pk}").status_code == 404
    own = Event.objects.filter(organization=domain.organization).first()
    assert api.get(f"/api/v1/events/{own.pk}").json()["id"] == str(own.pk)
    _, key = api_key_create(organization=other, name="other")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert [e["id"] for e in events(api)["results"]] == [str(foreign.pk)]


def test_domain_events_carry_the_domain_and_no_sequence(api, domain):
    Event.objects.create(organization=domain.organization, domain=domain, type=EventType.DOMAIN_DNS_CHANGED)
    (event,) = events(api, type="domain.dns_changed")["results"]
    assert (event["domain"], event["sequence"], event["recipient_id"], event["tags"]) == (
        "acme.example",
        None,
        None,
        [],
    )
