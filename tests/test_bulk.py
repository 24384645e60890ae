"""insert_rows stores every field exactly as bulk_create would (COPY on PostgreSQL), and fails as Django does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail.bulk import bulk_update_rows, insert_rows
from sending.models import Event, EventType, Message, MessageTag, Recipient, RecipientState, uuid7

WHEN = datetime(2026, 12, 4, 17, 0, 0, 123456, tzinfo=UTC)
# Every byte value, and the characters COPY's text format escapes.
RAW = bytes(range(256)) + b"\\N\t\r\n\\\\."
AWKWARD = "tab\there, new\nline, back\\slash, \\N, carriage\rreturn, \u00e9\u4e2d\U0001f600"


def message(organization, domain, **fields) -> Message:  # type: ignore[no-untyped-def]
    values = {
        "id": uuid7(),
        "organization": organization,
        "domain": domain,
        "message_id": "<1@x.example>",
        "mail_from": "app@acme.example",
        "subject": AWKWARD,
        "tags": ["a", "b\tc"],
        "metadata": {"order": "42", "note": AWKWARD, "nested": {"list": [1, 2.5, None, True]}},
        "raw": RAW,
        "size": len(RAW),
        "smtputf8": True,
        "created_at": WHEN,
    }
    return Message(**{**values, **fields})


def recipient(m: Message, **fields) -> Recipient:  # type: ignore[no-untyped-def]
    values = {"id": uuid7(), "message": m, "organization_id": m.organization_id, "address": "jane@dest.example"}
    return Recipient(**{**values, "domain": "dest.example", "created_at": WHEN, "updated_at": WHEN, **fields})


def stored(model, pk):  # type: ignore[no-untyped-def]
    return {f.attname: getattr(model.objects.get(pk=pk), f.attname) for f in model._meta.concrete_fields}


def test_rows_read_back_as_they_were_built(organization, domain):
    m = message(organization, domain)
    r = recipient(m, state=RecipientState.HELD, held_reason="send_limit", held_at=WHEN, last_text=AWKWARD)
    expected_message = {f.attname: getattr(m, f.attname) for f in Message._meta.concrete_fields}
    expected_recipient = {f.attname: getattr(r, f.attname) for f in Recipient._meta.concrete_fields}
    insert_rows(Message, [m])
    insert_rows(Recipient, [r])
    insert_rows(MessageTag, [MessageTag(message=m, organization=organization, name="welcome")])
    insert_rows(
        Event,
        [Event(organization=organization, message=m, recipient=r, type=EventType.QUEUED, created_at=WHEN, sequence=1)],
    )
    got = stored(Message, m.pk)
    assert bytes(got.pop("raw")) == RAW
    expected_message.pop("raw")
    assert got == expected_message
    assert stored(Recipient, r.pk) == expected_recipient
    assert list(MessageTag.objects.filter(message=m).values_list("name", flat=True)) == ["welcome"]
    event = Event.objects.get(recipient=r)
    assert (event.type, event.details, event.sequence, event.created_at, event.domain_id) == (
        "queued",
        {},
        1,
        WHEN,
        None,
    )


def test_null_foreign_keys_and_json_null(organization):
    m = message(organization, None, metadata={}, tags=[])
    insert_rows(Message, [m])
    insert_rows(Event, [Event(organization=organization, type=EventType.QUEUED, details={"k": None})])
    got = Message.objects.get(pk=m.pk)
    assert (got.domain_id, got.api_key_id, got.smtp_credential_id, got.tags, got.metadata) == (None, None, None, [], {})
    assert Event.objects.get(message=None, organization=organization).details == {"k": None}


def test_mapping_rows_take_defaults_for_missing_fields(organization, domain):
    m = message(organization, domain)
    insert_rows(Message, [m])
    full = {
        "organization_id": organization.pk,
        "message_id": m.pk,
        "recipient_id": None,
        "domain_id": None,
        "type": EventType.SENT,
        "created_at": WHEN,
        "details": {"address": AWKWARD},
        "sequence": 2,
    }
    insert_rows(Event, [full, {"organization_id": organization.pk, "message_id": m.pk, "type": EventType.QUEUED}])
    queued, sent = Event.objects.filter(message=m).order_by("type")
    assert (sent.type, sent.created_at, sent.details, sent.sequence) == ("sent", WHEN, {"address": AWKWARD}, 2)
    assert (queued.type, queued.details, queued.sequence, queued.recipient_id) == ("queued", {}, None, None)


def test_an_inserted_instance_saves_as_an_update(organization, domain):
    m = message(organization, domain)
    insert_rows(Message, [m])
    m.subject = "changed"
    m.save()  # an INSERT here would fail on the primary key
    assert Message.objects.get(pk=m.pk).subject == "changed"
    assert m._state.db == connection.alias


def test_a_duplicate_key_raises_integrity_error_and_stores_nothing(organization, domain):
    m = message(organization, domain)
    insert_rows(Message, [m])
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(Message, [message(organization, domain), message(organization, domain, id=m.id)])
    assert Message.objects.count() == 1


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite stores NUL in text")
def test_a_nul_character_raises_data_error(organization, domain):
    with pytest.raises(DataError), transaction.atomic():
        insert_rows(Message, [message(organization, domain, subject="nul \x00 here")])


def test_bulk_update_writes_each_rows_own_values(organization, domain):
    m = message(organization, domain)
    rows = [recipient(m, address=f"r{i}@dest.example", claim_token=uuid7(), sending_since=WHEN) for i in range(3)]
    insert_rows(Message, [m])
    insert_rows(Recipient, rows)
    token = rows[2].claim_token
    later = WHEN.replace(year=2027)
    for i, r in enumerate(rows):
        r.state, r.last_code, r.last_text, r.tls = (
            RecipientState.DELIVERED,
            250 + i,
            f"{AWKWARD} {i}",
            [True, None][i % 2],
        )
        r.claim_token, r.sending_since, r.delivered_at, r.event_seq = None, None, later, 7 + i
    fields = ["state", "last_code", "last_text", "tls", "claim_token", "sending_since", "delivered_at", "event_seq"]
    bulk_update_rows(Recipient, rows[:2], fields)
    for i, r in enumerate(rows[:2]):
        assert stored(Recipient, r.pk) == {f.attname: getattr(r, f.attname) for f in Recipient._meta.concrete_fields}
        assert (r.last_code, r.tls) == (250 + i, [True, None][i % 2])
    untouched = Recipient.objects.get(pk=rows[2].pk)
    assert (untouched.state, untouched.claim_token, untouched.last_text) == ("queued", token, "")


def test_nothing_to_insert_sends_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        insert_rows(Message, [])


# NUL is refused in PostgreSQL text and jsonb however it is sent.
TEXT = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(TEXT, max_size=60),
    raw=st.binary(max_size=200),
    metadata=st.dictionaries(st.text(TEXT, max_size=8), st.text(TEXT, max_size=20) | st.integers() | st.none()),
)
def test_any_text_bytes_and_json_round_trip(organization, domain, text, raw, metadata):
    m = message(organization, domain, subject=text, mail_from=text[:320], raw=raw, size=len(raw), metadata=metadata)
    with transaction.atomic():
        insert_rows(Message, [m])
        got = Message.objects.get(pk=m.pk)
        assert (got.subject, got.mail_from, bytes(got.raw), got.metadata) == (text, text[:320], raw, metadata)
        transaction.set_rollback(True)
