"""Accepting messages: build them, then commit each message with all its recipients before anyone says yes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiKey, Organization, SmtpCredential
from mail.addresses import Mailbox
from mail.bulk import insert_rows
from sending.delivery.queueing import enqueue_after_commit
from sending.errors import PostwerkError, Refused, field_errors
from sending.intake.composer import Draft, HeaderError, build_message
from sending.models import (
    Domain,
    EventType,
    IdempotencyKey,
    Message,
    MessageTag,
    Recipient,
    RecipientState,
    Suppression,
    uuid7,
)
from sending.states import events_insert, recipient_event_row
from sending.streams.options import SendOptions, options_apply
from sending.templating.compose import TemplateLookup, TemplateRef, draft_render

if TYPE_CHECKING:
    from sending.intake.accept import Caller


class MessageTooLarge(Refused):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The message is {size} bytes; the limit is {limit} bytes.",
            code="too_large",
            http_status=413,
            smtp_reply="552 5.3.4 Message size exceeds the fixed maximum",
        )
        self.size, self.limit = size, limit


class DuplicateRequest(PostwerkError):
    """Another request with the same Idempotency-Key committed first."""


@dataclass
class Prepared:
    """A built message with its ids, not yet stored."""

    message: Message
    recipients: list[Recipient]
    tags: list[str]
    # Suppressed recipients (address -> suppression), filled by recipients_screen.
    suppressed: dict[str, Suppression] = field(default_factory=dict)
    report_suppressed: bool = False
    # Why the message is held (reason, scope or window), filled by holds_screen; None when it goes out.
    hold: dict | None = None


@dataclass(frozen=True)
class IdempotencyRecord:
    key: str
    request_hash: str
    status_code: int
    response: dict | list


@dataclass
class ApiSubmission:
    """A message given to the send API, validated into a Draft (sending.intake.accept's Submission)."""

    draft: Draft
    report_suppressed: bool = False
    options: SendOptions = field(default_factory=SendOptions)
    # A template and model to render into the draft's subject, HTML and text (sending.templating.compose).
    template: TemplateRef | None = None

    def sender_domains(self) -> list[str]:
        return [self.draft.sender.domain]

    def compose(self, caller: Caller, domain: Domain) -> Prepared:
        draft, version = self.draft, None
        if self.template is not None:  # render first: the message is built from what the template makes
            lookup = TemplateLookup(caller.organization, caller.templates)
            draft = draft_render(draft, self.template, lookup)
            version = lookup.get(self.template.template).version
        try:
            prepared = message_prepare(
                organization=caller.organization, api_key=caller.api_key, domain=domain, draft=draft
            )
        except HeaderError as exc:  # a value the serializer let through but the built header would not keep
            raise Refused(
                "The request has invalid fields.", code="invalid", fields=field_errors(exc.field, str(exc))
            ) from exc
        prepared.report_suppressed = self.report_suppressed
        prepared.message.template_version = version  # which template and version made it (API, dashboard)
        options_apply(prepared, caller, self.options)
        return prepared


def message_prepare(*, organization: Organization, api_key: ApiKey | None, domain: Domain, draft: Draft) -> Prepared:
    """Build the MIME message of an API request and its rows in memory. Raises MessageTooLarge."""
    message_pk = uuid7()
    message_id = f"<{message_pk}@{settings.POSTWERK_HOSTNAME}>"
    now = timezone.now()
    raw = build_message(draft, message_id=message_id, date=now)
    return prepared_rows(
        organization=organization,
        domain=domain,
        message_pk=message_pk,
        message_id=message_id,
        raw=raw,
        mail_from=draft.sender.envelope_address,
        subject=draft.subject,
        recipients=draft.recipients,
        smtputf8=draft.smtputf8,
        tags=draft.tags,
        metadata=draft.metadata,
        api_key=api_key,
        now=now,
    )


def prepared_rows(
    *,
    organization: Organization,
    domain: Domain,
    message_pk: uuid.UUID,
    message_id: str,
    raw: bytes,
    mail_from: str,
    subject: str,
    recipients: list[tuple[str, Mailbox]],
    smtputf8: bool,
    tags: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    api_key: ApiKey | None = None,
    smtp_credential: SmtpCredential | None = None,
    now: datetime | None = None,
) -> Prepared:
    """The Message and Recipient rows for a built message, whichever way it arrived. Raises MessageTooLarge."""
    if len(raw) > settings.POSTWERK_MAX_MESSAGE_SIZE:
        raise MessageTooLarge(len(raw), settings.POSTWERK_MAX_MESSAGE_SIZE)
    now = now or timezone.now()
    message = Message(
        id=message_pk,
        organization=organization,
        domain=domain,
        api_key=api_key,
        smtp_credential=smtp_credential,
        message_id=message_id,
        mail_from=mail_from,
        subject=subject,
        tags=tags or [],
        metadata=metadata or {},
        raw=raw,
        size=len(raw),
        smtputf8=smtputf8,
        created_at=now,
        # Decided by the key or credential it came with: delivery reads the message alone.
        sandbox=bool((api_key and api_key.sandbox) or (smtp_credential and smtp_credential.sandbox)),
    )
    # The lease keeps the sweep off a fresh recipient while its broker message is on the way to a worker.
    lease_until = now + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE)
    rows, seen = [], set()
    for kind, mailbox in recipients:
        address = mailbox.envelope_address
        if address.lower() in seen:
            continue  # one delivery per address, however often it is named
        seen.add(address.lower())
        rows.append(
            Recipient(
                id=uuid7(),
                message=message,
                organization=organization,
                address=address,
                domain=mailbox.domain,
                kind=kind,
                next_attempt_at=lease_until,
                created_at=now,
                updated_at=now,
                event_seq=1,  # its `queued` (or `suppressed`) event
            )
        )
    return Prepared(message=message, recipients=rows, tags=list(dict.fromkeys(tags or [])))


_FIRST_EVENT = {
    RecipientState.SUPPRESSED: EventType.SUPPRESSED,
    RecipientState.HELD: EventType.HELD,
    RecipientState.SCHEDULED: EventType.SCHEDULED,
}


def _event_details(prepared: Prepared, r: Recipient) -> dict:
    if r.state == RecipientState.SCHEDULED and prepared.message.send_at is not None:
        return {"address": r.address, "send_at": prepared.message.send_at.isoformat()}
    if r.state == RecipientState.HELD and prepared.hold is not None:
        return {"address": r.address, **prepared.hold}
    suppression = prepared.suppressed.get(r.address)
    if suppression is None:
        return {"address": r.address}
    return {
        "address": r.address,
        "suppression": {
            "reason": suppression.reason,
            "since": suppression.created_at.isoformat(),
            **suppression.details,
        },
    }


def messages_submit(
    *, organization: Organization, prepared: list[Prepared], idempotency: IdempotencyRecord | None = None
) -> None:
    """Store messages, recipients and their `queued` events in one transaction; enqueue after commit.

    Raises DuplicateRequest if the idempotency key was taken by a concurrent request: nothing is stored then.
    """
    messages = [p.message for p in prepared]
    recipients = [r for p in prepared for r in p.recipients]
    try:
        # No savepoint inside the SMTP group commit's transaction (two round trips per group): a failure there
        # fails the whole group anyway, which then retries message by message. An idempotency key's duplicate
        # must leave a surrounding transaction usable for the lookup below, so it keeps one.
        with transaction.atomic(savepoint=idempotency is not None):
            if idempotency is not None:
                IdempotencyKey.objects.create(
                    organization=organization,
                    key=idempotency.key,
                    request_hash=idempotency.request_hash,
                    status_code=idempotency.status_code,
                    response=idempotency.response,
                )
            _insert_all(organization, prepared, messages, recipients)
            enqueue_after_commit(
                [(str(r.id), r.domain, r.lane) for r in recipients if r.state == RecipientState.QUEUED]
            )
    except IntegrityError as exc:
        if (
            idempotency is not None
            and IdempotencyKey.objects.filter(organization=organization, key=idempotency.key).exists()
        ):
            raise DuplicateRequest from exc
        raise


def _insert_all(
    organization: Organization, prepared: list[Prepared], messages: list[Message], recipients: list[Recipient]
) -> None:
    """The rows of accepted messages: messages, recipients, tags and each recipient's first event."""
    insert_rows(Message, messages)
    insert_rows(Recipient, recipients)
    tags = [MessageTag(message=p.message, organization=organization, name=tag) for p in prepared for tag in p.tags]
    insert_rows(MessageTag, tags)
    events = [
        recipient_event_row(r, _FIRST_EVENT.get(r.state, EventType.QUEUED), r.created_at, _event_details(p, r), 1)
        for p in prepared
        for r in p.recipients
    ]
    events_insert(events, (r for p in prepared for r in p.recipients))
