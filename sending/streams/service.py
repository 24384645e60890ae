"""Streams of an organization: the `transactional` one every organization has, and the broadcast ones it adds.

A message names its stream by name (`stream` on the send API, `X-Postwerk-Stream` or the credential's stream over
SMTP); no name means `transactional`. Reads are memoised on the accept pipeline's Caller, so a batch of 500
messages looks each stream up once.
"""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Organization
from sending.errors import Refused
from sending.models import Stream

TRANSACTIONAL = "transactional"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def stream_default(organization: Organization | int) -> Stream:
    """The organization's `transactional` stream, created if it is missing (organizations get it when created;
    the migration gave it to the ones before)."""
    organization_id = organization if isinstance(organization, int) else organization.pk
    stream = Stream.objects.filter(organization_id=organization_id, name=TRANSACTIONAL).first()
    if stream is not None:
        return stream
    try:
        with transaction.atomic():
            return Stream.objects.create(
                organization_id=organization_id, name=TRANSACTIONAL, kind=Stream.Kind.TRANSACTIONAL
            )
    except IntegrityError:  # created concurrently
        return Stream.objects.get(organization_id=organization_id, name=TRANSACTIONAL)


def organization_created(sender: type, instance: Organization, created: bool, raw: bool = False, **_: object) -> None:
    """post_save of Organization (connected in sending.apps): a new organization gets its `transactional` stream."""
    if created and not raw:
        stream_default(instance)


def stream_find(organization: Organization, name: str | None) -> Stream | None:
    """The organization's stream of that name (`transactional` when no name is given), or None."""
    if not name:
        return stream_default(organization)
    return Stream.objects.filter(organization=organization, name=name.strip().lower()).first()


def unknown_stream(name: str, *, field: str = "stream") -> Refused:
    message = f"There is no message stream named {name!r}: create it (POST /api/v1/streams) or leave {field} out."
    return Refused(
        message,
        code="invalid",
        http_status=400,
        fields={field: [message]},
        smtp_reply=f"550 5.7.1 No message stream named {' '.join(name.split())[:64]!r}",
    )


class StreamInvalid(Refused):
    """A stream create or update with fields that are wrong, by field."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("The stream has invalid fields.", code="invalid", fields=fields)


def stream_create(
    *,
    organization: Organization,
    name: str,
    kind: str = Stream.Kind.BROADCAST,
    description: str = "",
    **settings: object,
) -> Stream:
    """A new stream. Only `broadcast` streams may be added: `transactional` is the one every organization has."""
    name = name.strip().lower()
    errors: dict[str, list[str]] = {}
    if not NAME.match(name):
        errors["name"] = ["1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit."]
    if kind != Stream.Kind.BROADCAST:
        errors["kind"] = ["Only broadcast streams can be added; every organization has its transactional stream."]
    if errors:
        raise StreamInvalid(errors)
    try:
        with transaction.atomic():
            stream = Stream.objects.create(
                organization=organization, name=name, kind=kind, description=description, **settings
            )
            audit_record(
                organization=organization, action="stream.created", target=stream, changes={"name": name, "kind": kind}
            )
            return stream
    except IntegrityError as exc:
        raise StreamInvalid({"name": [f"A stream named {name!r} exists already."]}) from exc


# What an update may change; name and kind stay (messages and credentials name the stream).
UPDATABLE = ("description", "track_opens", "track_clicks", "hourly_limit", "daily_limit")


def stream_update(*, stream: Stream, **changes: object) -> Stream:
    changed = {}
    for field, value in changes.items():
        if field in UPDATABLE and getattr(stream, field) != value:
            changed[field] = [getattr(stream, field), value]
            setattr(stream, field, value)
    stream.updated_at = timezone.now()
    with transaction.atomic():
        stream.save(update_fields=[*UPDATABLE, "updated_at"])
        if changed:
            audit_record(organization=stream.organization_id, action="stream.updated", target=stream, changes=changed)
    return stream
