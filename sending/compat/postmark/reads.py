"""Postmark's read endpoints that its client libraries call: an outbound message's details (postmarker's
`messages.outbound.get`), bounces (postmarker's `bounces.all` and `bounces.get`) and a stream's suppressions dump.
Each reads Postwerk's own rows, scoped to the token's organization."""

from __future__ import annotations

import uuid
from datetime import date
from email import policy
from email.parser import BytesParser

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.scopes import Scope
from sending.compat.postmark.errors import INVALID_EMAIL_REQUEST, MESSAGE_NOT_FOUND, PostmarkError
from sending.compat.postmark.fields import POSTMARK_DEFAULT_STREAM, TRANSACTIONAL
from sending.compat.postmark.views import PostmarkView, error_response
from sending.models import Event, EventType, Message, Recipient, RecipientState, Suppression
from sending.webhooks.postmark import bounce_record, events_for_postmark, postmark_payload, postmark_stream

# Recipients still on their way: Postmark's message status is `Queued` while one is; then `Sent` when one went
# out (delivered, or bounced after it was sent), else `Failed`.
_WAITING = {
    RecipientState.QUEUED,
    RecipientState.SCHEDULED,
    RecipientState.HELD,
    RecipientState.SENDING,
    RecipientState.DEFERRED,
}
_EVENT_TYPES = {
    EventType.DELIVERED: "Delivered",
    EventType.BOUNCED: "Bounced",
    EventType.DEFERRED: "Transient",
    EventType.OPENED: "Opened",
    EventType.CLICKED: "LinkClicked",
    EventType.UNSUBSCRIBED: "SubscriptionChanged",
    EventType.COMPLAINED: "Bounced",
}
_SUPPRESSION_REASONS = {
    Suppression.Reason.HARD_BOUNCE: "HardBounce",
    Suppression.Reason.SOFT_BOUNCE: "HardBounce",
    Suppression.Reason.COMPLAINT: "SpamComplaint",
    Suppression.Reason.MANUAL: "ManualSuppression",
    Suppression.Reason.UNSUBSCRIBE: "ManualSuppression",
}


def _not_found(what: str) -> Response:
    return error_response(PostmarkError(422, MESSAGE_NOT_FOUND, f"This {what} was not found."))


def _bodies(raw: bytes) -> tuple[str, str]:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    # The stored message has CRLF line ends (RFC 5322); the caller gave, and gets back, plain newlines.
    return tuple(part.get_content().replace("\r\n", "\n") if part else "" for part in (text, html))  # type: ignore[return-value]


def _people(recipients: list[Recipient], kind: str) -> list[dict]:
    return [{"Email": r.address, "Name": ""} for r in recipients if r.kind == kind]


def message_details(message: Message, events: list[Event]) -> dict:
    recipients = list(message.recipients.all())
    text, html = _bodies(bytes(message.raw))
    states = {r.state for r in recipients}
    if states & _WAITING:
        status = "Queued"
    else:
        status = "Sent" if states & {RecipientState.DELIVERED, RecipientState.BOUNCED} else "Failed"
    by_recipient = {r.pk: r.address for r in recipients}
    return {
        "MessageID": str(message.id),
        "MessageStream": postmark_stream(message.stream.name if message.stream else None),
        "From": message.mail_from,
        "To": _people(recipients, Recipient.Kind.TO),
        "Cc": _people(recipients, Recipient.Kind.CC),
        "Bcc": _people(recipients, Recipient.Kind.BCC),
        "Recipients": [r.address for r in recipients],
        "ReceivedAt": message.created_at.isoformat(),
        "Subject": message.subject,
        "TextBody": text,
        "HtmlBody": html,
        "Tag": message.tags[0] if message.tags else "",
        "Metadata": dict(message.metadata),
        "Status": status,
        "Attachments": [],
        "TrackOpens": False,
        "TrackLinks": "None",
        "Sandboxed": message.sandbox,
        "MessageEvents": [
            {
                "Recipient": by_recipient.get(e.recipient_id, ""),
                "Type": _EVENT_TYPES[e.type],
                "ReceivedAt": e.created_at.isoformat(),
                "Details": postmark_payload(e) or {},
            }
            for e in events
            if e.type in _EVENT_TYPES
        ],
    }


class OutboundMessageDetailsView(PostmarkView):
    required_scope = Scope.MESSAGES_READ

    def get(self, request: Request, message_id: str) -> Response:
        try:
            pk = uuid.UUID(message_id)
        except ValueError:
            return _not_found("message")
        organization = request.user.organization
        message = Message.objects.filter(organization=organization, pk=pk).select_related("stream").first()
        if message is None:
            return _not_found("message")
        events = list(
            events_for_postmark(Event.objects.filter(organization=organization, message=message)).order_by("id")
        )
        return Response(message_details(message, events))


_BOUNCE_TYPES = {
    "HardBounce": Q(type=EventType.BOUNCED) & ~Q(details__kind="soft"),
    "SoftBounce": Q(type=EventType.BOUNCED, details__kind="soft"),
    "Transient": Q(type=EventType.DEFERRED),
    "SpamComplaint": Q(type=EventType.COMPLAINED),
}


def _paging(request: Request) -> tuple[int, int] | Response:
    try:
        count = int(request.query_params.get("count", 100))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        count, offset = -1, -1
    if not (1 <= count <= 500) or offset < 0:
        return error_response(
            PostmarkError(422, INVALID_EMAIL_REQUEST, "'count' must be 1 to 500 and 'offset' 0 or more.")
        )
    return count, offset


def _day(value: str | None) -> date | None:
    """Postmark's fromdate/todate: a date, or a date and time (of which the day counts)."""
    if not value:
        return None
    try:
        when = parse_datetime(value)
        return when.date() if when is not None else parse_date(value)
    except ValueError:
        return None


class BouncesView(PostmarkView):
    """GET /bounces: Postmark's bounces are Postwerk's bounced, deferred (Transient) and complained events."""

    required_scope = Scope.MESSAGES_READ

    def get(self, request: Request) -> Response:
        paging = _paging(request)
        if isinstance(paging, Response):
            return paging
        count, offset = paging
        params = request.query_params
        kinds = params.get("type")
        qs = Event.objects.filter(organization=request.user.organization)
        qs = qs.filter(
            _BOUNCE_TYPES[kinds] if kinds in _BOUNCE_TYPES else Q(type__in=[EventType.BOUNCED, EventType.COMPLAINED])
        )
        if params.get("emailFilter"):
            qs = qs.filter(recipient__address__icontains=params["emailFilter"])
        if params.get("tag"):
            qs = qs.filter(message__tag_rows__name=params["tag"])
        if params.get("messageID"):
            try:
                qs = qs.filter(message_id=uuid.UUID(params["messageID"]))
            except ValueError:
                qs = qs.none()
        if params.get("messagestream"):
            name = params["messagestream"]
            qs = qs.filter(message__stream__name=TRANSACTIONAL if name == POSTMARK_DEFAULT_STREAM else name)
        for name, lookup in (("fromdate", "created_at__date__gte"), ("todate", "created_at__date__lte")):
            day = _day(params.get(name))
            if day is not None:
                qs = qs.filter(**{lookup: day})
        total = qs.count()
        page = events_for_postmark(qs).order_by("-id")[offset : offset + count]
        return Response({"TotalCount": total, "Bounces": [bounce_record(e) for e in page]})


class BounceView(PostmarkView):
    required_scope = Scope.MESSAGES_READ

    def get(self, request: Request, bounce_id: int) -> Response:
        event = (
            events_for_postmark(Event.objects.filter(organization=request.user.organization, pk=bounce_id))
            .filter(type__in=[EventType.BOUNCED, EventType.DEFERRED, EventType.COMPLAINED])
            .first()
        )
        if event is None:
            return _not_found("bounce")
        return Response(bounce_record(event))


class SuppressionsDumpView(PostmarkView):
    """GET /message-streams/{stream}/suppressions/dump: the addresses Postwerk will not send to on that stream
    (organization-wide suppressions and the stream's own)."""

    required_scope = Scope.SUPPRESSIONS

    def get(self, request: Request, stream: str) -> Response:
        organization = request.user.organization
        name = TRANSACTIONAL if stream == POSTMARK_DEFAULT_STREAM else stream
        now = timezone.now()
        qs = Suppression.objects.filter(organization=organization, removed_at__isnull=True).filter(
            (Q(stream__isnull=True) | Q(stream__name=name)) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        )
        email = request.query_params.get("EmailAddress")
        if email:
            qs = qs.filter(address=email.lower())
        wanted = request.query_params.get("SuppressionReason")
        rows = [
            {
                "EmailAddress": s.address,
                "SuppressionReason": _SUPPRESSION_REASONS.get(s.reason, "ManualSuppression"),
                "Origin": "Customer" if s.reason == Suppression.Reason.MANUAL else "Recipient",
                "CreatedAt": s.created_at.isoformat(),
            }
            for s in qs.order_by("created_at")
        ]
        if wanted:
            rows = [row for row in rows if row["SuppressionReason"] == wanted]
        return Response({"Suppressions": rows})
