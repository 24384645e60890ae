"""Retention: bodies blanked after the raw age, messages and their history deleted after the full age, in
batches; mail still on its way and suppressions are never touched."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from sending.delivery.slots import slot_release, slot_take
from sending.delivery.throttling import tokens_take
from sending.models import (
    DeliverySlot,
    DestinationState,
    Event,
    EventType,
    Message,
    MessageTag,
    Recipient,
    RecipientState,
    Suppression,
)
from sending.operations.retention import body_purged, retention_purge

pytestmark = pytest.mark.django_db


def message(api, *, age_days: int, state: str = RecipientState.DELIVERED, to: str = "jane@dest.example") -> Message:
    response = api.post(
        "/api/v1/messages",
        {"from": "hello@acme.example", "to": [to], "subject": "Hi", "text": "Hello " * 50, "tags": ["t"]},
        format="json",
    )
    assert response.status_code == 202, response.json()
    when = timezone.now() - timedelta(days=age_days)
    Message.objects.filter(pk=response.json()["id"]).update(created_at=when)
    Recipient.objects.filter(message_id=response.json()["id"]).update(state=state, created_at=when)
    Event.objects.filter(message_id=response.json()["id"]).update(created_at=when)
    return Message.objects.get(pk=response.json()["id"])


def test_bodies_of_finished_messages_are_blanked_after_the_raw_age(api, settings):
    settings.POSTWERK_RETENTION_RAW_DAYS, settings.POSTWERK_RETENTION_DAYS = 30, 90
    old = [message(api, age_days=31) for _ in range(3)]
    recent = message(api, age_days=29)
    waiting = message(api, age_days=40, state=RecipientState.DEFERRED)
    held = message(api, age_days=40, state=RecipientState.HELD)

    report = retention_purge(batch=2)  # two batches for the three old ones

    assert report.bodies_purged == 3
    for m in old:
        m.refresh_from_db()
        assert body_purged(m) and m.size > 0 and m.subject == "Hi"  # metadata stays
        assert m.recipients.count() == 1
    for m in (recent, waiting, held):
        m.refresh_from_db()
        assert not body_purged(m) and b"From:" in bytes(m.raw)
    assert retention_purge().bodies_purged == 0  # nothing left to do


def test_messages_and_their_history_are_deleted_after_the_full_age(api, settings, organization, domain):
    settings.POSTWERK_RETENTION_RAW_DAYS, settings.POSTWERK_RETENTION_DAYS = 30, 90
    gone = [message(api, age_days=91, to=f"u{i}@dest.example") for i in range(3)]
    kept = message(api, age_days=60)
    stuck = message(api, age_days=120, state=RecipientState.QUEUED)
    suppression = Suppression.objects.create(
        organization=organization,
        address="u0@dest.example",
        reason=Suppression.Reason.HARD_BOUNCE,
        source_message=gone[0],
        created_at=timezone.now() - timedelta(days=400),
    )
    old_domain_event = Event.objects.create(
        organization=organization,
        domain=domain,
        type=EventType.DOMAIN_VERIFIED,
        created_at=timezone.now() - timedelta(days=100),
    )
    new_domain_event = Event.objects.create(organization=organization, domain=domain, type=EventType.DOMAIN_VERIFIED)

    report = retention_purge(batch=2)

    assert report.messages_deleted == 3 and report.orphan_events_deleted == 1
    ids = [m.pk for m in gone]
    assert not Message.objects.filter(pk__in=ids).exists()
    assert not Recipient.objects.filter(message_id__in=ids).exists()
    assert not Event.objects.filter(message_id__in=ids).exists()
    assert not MessageTag.objects.filter(message_id__in=ids).exists()
    assert Message.objects.filter(pk__in=[kept.pk, stuck.pk]).count() == 2
    assert not Event.objects.filter(pk=old_domain_event.pk).exists()
    assert Event.objects.filter(pk=new_domain_event.pk).exists()
    suppression.refresh_from_db()  # kept, whatever its age; only the link to the deleted message is gone
    assert suppression.source_message is None and suppression.removed_at is None


def test_purge_command_reports_what_it_did(api, settings, capsys):
    settings.POSTWERK_RETENTION_RAW_DAYS, settings.POSTWERK_RETENTION_DAYS = 30, 90
    message(api, age_days=10)
    message(api, age_days=100)
    call_command("purge", "--raw-days", "5", "--days", "50", "--batch", "10")
    report = json.loads(capsys.readouterr().out)
    assert report["messages_deleted"] == 1 and report["bodies_purged"] == 1
    assert Message.objects.count() == 1


def test_purge_command_refuses_bad_ages():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--days must be at least --raw-days"):
        call_command("purge", "--raw-days", "30", "--days", "10")
    with pytest.raises(CommandError, match="--batch"):
        call_command("purge", "--batch", "0")


def test_throttle_rows_of_destinations_idle_for_a_day_are_deleted():
    now = timezone.now()
    day_ago = now - timedelta(days=1, minutes=1)
    DestinationState.objects.bulk_create(
        [
            DestinationState(key="idle.example", updated_at=day_ago, window_start=day_ago, window_count=3),
            DestinationState(key="counting.example", updated_at=day_ago, window_start=now, window_count=1),
            DestinationState(key="backed-off.example", updated_at=day_ago, backoff_until=now + timedelta(hours=1)),
            DestinationState(key="new.example", updated_at=now),
        ]
    )
    slot_release(slot_take("busy-rule", 3))  # released now: its key was used within the day, all 3 rows stay
    old = slot_take("old-rule", 2)
    slot_release(old)
    DeliverySlot.objects.filter(key="old-rule").update(expires_at=day_ago)
    DeliverySlot.objects.bulk_create([DeliverySlot(key="never-held", slot=0)])

    report = retention_purge(now=now)

    assert report.throttle_rows_deleted == 1 + 2 + 1
    assert set(DestinationState.objects.values_list("key", flat=True)) == {
        "counting.example",
        "backed-off.example",
        "new.example",
    }
    assert sorted(DeliverySlot.objects.values_list("key", "slot")) == [
        ("busy-rule", 0),
        ("busy-rule", 1),
        ("busy-rule", 2),
    ]
    # Mail to a deleted destination starts from scratch: its rows come back on first use.
    assert tokens_take("idle.example", limit=5, wanted=2, now=now)[0] == 2
    assert slot_take("old-rule", 2) is not None
