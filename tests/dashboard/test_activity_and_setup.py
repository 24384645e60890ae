"""The activity feed's page and poll (filters, what `since` returns, another organization's events), the domain
set-up checklist's ticks and who publishes each record, the test message's refusals, and the webhook deliveries'
filters: the views through Django's test client (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from sending.models import DnsCheck, Event, EventType, Message
from tests.conftest import publish_records

pytestmark = pytest.mark.django_db


def url(name: str, org, *args: object) -> str:  # type: ignore[no-untyped-def]
    return reverse(f"dashboard:{name}", args=[org.pk, *args])


def shown_ids(response) -> list[int]:  # type: ignore[no-untyped-def]
    return [row["event"].pk for row in response.context["rows"]]


def test_activity_lists_the_organizations_events_newest_first_with_links(owner_client, organization, delivered, other):
    Event.objects.create(organization=other["org"], message=other["message"], type=EventType.QUEUED)
    response = owner_client.get(url("activity", organization))
    assert response.status_code == 200
    ids = shown_ids(response)
    mine = list(Event.objects.filter(organization=organization).order_by("-id").values_list("pk", flat=True))
    assert ids == mine  # every one of Acme's, none of Globex's
    message = Message.objects.get(organization=organization, subject="Your order")
    assert url("message", organization, message.pk).encode() in response.content


def test_activity_filters_by_type_domain_tag_and_recipient(owner_client, organization, delivered, domain):
    def shown(**query: str) -> set[str]:
        response = owner_client.get(url("activity", organization), query)
        assert response.status_code == 200
        return {
            (r["event"].type, r["event"].recipient.address if r["event"].recipient else "")
            for r in response.context["rows"]
        }

    assert shown(type="bounced") == {("bounced", "gone@dest.example")}
    assert {address for _, address in shown(tag="bounce")} == {"gone@dest.example"}
    assert {address for _, address in shown(recipient="JANE@dest.example")} == {"jane@dest.example"}
    by_domain = owner_client.get(url("activity", organization), {"domain": str(domain.pk)})
    expected = Event.objects.filter(Q(domain=domain) | Q(message__domain=domain)).order_by("-id")
    assert shown_ids(by_domain) == list(expected.values_list("pk", flat=True))  # its own events and its mail's
    bad = owner_client.get(url("activity", organization), {"type": "nonsense"})
    assert bad.status_code == 400


def test_activity_poll_answers_the_rows_since_the_newest_shown_with_a_look_back(owner_client, organization, delivered):
    newest = Event.objects.filter(organization=organization).order_by("-id").first()
    later = Event.objects.create(
        organization=organization,
        message=newest.message,
        recipient=newest.recipient,
        type=EventType.OPENED,
        created_at=newest.created_at + timedelta(minutes=5),
    )
    response = owner_client.get(url("activity_feed", organization), {"since": later.created_at.isoformat()})
    assert response.status_code == 200
    assert shown_ids(response) == [later.pk]  # older than the 30 s look-back: not sent again
    assert response["Content-Security-Policy"].startswith("default-src 'self'")
    assert f'data-event-id="{later.pk}"'.encode() in response.content
    filtered = owner_client.get(
        url("activity_feed", organization), {"since": later.created_at.isoformat(), "type": "bounced"}
    )
    assert shown_ids(filtered) == []
    impossible = owner_client.get(url("activity_feed", organization), {"since": "2026-02-31T00:00:00+00:00"})
    assert impossible.status_code == 200  # a date that cannot be: the newest rows, not a 500


def test_set_up_ticks_off_what_the_checks_found_and_names_who_publishes(owner_client, organization, zone, settings):
    from sending.domains.service import domain_get_or_create

    settings.POSTWERK_DMARC_RUA = "dmarc@reports.postwerk.example"  # another domain: the operator authorises it
    shop, _ = domain_get_or_create(organization=organization, name="shop.example")
    steps = owner_client.get(url("domain_setup", organization, shop.pk)).context["steps"]
    assert {s.state for s in steps} == {"unchecked"}
    assert {s.record["purpose"]: s.publisher for s in steps}["dmarc_report"] == "operator"

    publish_records(zone, shop, ("ownership",))
    response = owner_client.post(url("domain_check", organization, shop.pk), {"next": "setup"})
    assert response.status_code == 302 and response["Location"] == url("domain_setup", organization, shop.pk)
    steps = {s.record["purpose"]: s for s in owner_client.get(response["Location"]).context["steps"]}
    assert steps["ownership"].state == "done"
    assert steps["dkim"].state == "todo" and steps["dkim"].publisher == "owner"
    assert steps["dkim"].problems[0][0] == "owner" and "Add a TXT record" in steps["dkim"].problems[0][1]

    # The return path's CNAME in place while the platform's SPF behind it is missing: ticked, the rest is the
    # operator's.
    publish_records(zone, shop, ("return_path",))
    owner_client.post(url("domain_check", organization, shop.pk), {"next": "setup"})
    steps = {s.record["purpose"]: s for s in owner_client.get(response["Location"]).context["steps"]}
    assert steps["return_path"].state == "done"
    assert [who for who, _ in steps["return_path"].problems] == ["operator"]


def test_a_failing_return_path_spf_behind_the_right_cname_is_the_operators_to_fix(owner_client, organization, healthy):
    check = DnsCheck.objects.get(domain=healthy, name="spf:return_path")
    check.status, check.details = "missing", {"cname": "bounces.postwerk.example", "publisher": "operator"}
    check.save()
    response = owner_client.get(url("domain", organization, healthy.pk))
    assert b"The platform operator must act" in response.content
    check.details = {}
    check.save()
    assert b"You must act: your DNS" in owner_client.get(url("domain", organization, healthy.pk)).content


def test_a_test_message_is_refused_like_any_other_mail(owner_client, organization, zone):
    from accounts.models import AuditEntry
    from sending.domains.service import domain_get_or_create

    unverified, _ = domain_get_or_create(organization=organization, name="new.example")
    response = owner_client.post(
        url("domain_send_test", organization, unverified.pk), {"local_part": "test", "to": "me@dest.example"}
    )
    assert response.status_code == 403
    assert b"Not sent:" in response.content
    bad = owner_client.post(url("domain_send_test", organization, unverified.pk), {"local_part": "a b@", "to": "x"})
    assert bad.status_code == 400
    assert not Message.objects.exists() and not AuditEntry.objects.filter(action="domain.test_message_sent").exists()


def test_webhook_deliveries_filter_by_type_state_and_recipient(owner_client, organization, delivered, settings):
    from sending.models import WebhookDelivery
    from sending.webhooks.endpoints import webhook_endpoint_create

    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    endpoint, _ = webhook_endpoint_create(organization=organization, url="http://127.0.0.1:9/hook", event_types=[])
    for event in Event.objects.filter(organization=organization, type__in=["delivered", "bounced"]):
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            organization=organization,
            event=event,
            state="succeeded",
            last_status=200,
            succeeded_at=timezone.now(),
        )
    page = url("webhook", organization, endpoint.pk)

    def shown(**query: str) -> list[tuple[str, str]]:
        response = owner_client.get(page, query)
        assert response.status_code == 200
        return [(d.event.type, d.event.recipient.address) for d in response.context["deliveries"]]

    assert sorted(shown()) == [("bounced", "gone@dest.example"), ("delivered", "jane@dest.example")]
    assert shown(type="bounced") == [("bounced", "gone@dest.example")]
    assert shown(recipient="jane@dest.example") == [("delivered", "jane@dest.example")]
    assert shown(state="failed") == []
    assert owner_client.get(page, {"state": "nonsense"}).status_code == 400
