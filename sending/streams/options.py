"""How a message is to be sent, beyond its content: its stream, when it may go (`send_at`), by when it must have
arrived (`deliver_within`), its priority and its own open/click tracking. Applied to a composed message in the
compose step of the one accept pipeline (sending.intake.accept), whichever way the message came in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from sending.feedback.tracking import tracking_override_refusal
from sending.models import RecipientState, Stream
from sending.streams.service import stream_find, unknown_stream
from sending.streams.unsubscribe import list_unsubscribe_refusal

if TYPE_CHECKING:
    from sending.intake.accept import Caller
    from sending.intake.submission import Prepared

MAX_SCHEDULE_AHEAD = timedelta(days=7)
HIGH = "high"
NORMAL = "normal"
PRIORITIES = (NORMAL, HIGH)


@dataclass(frozen=True)
class SendOptions:
    stream: str | None = None  # a stream's name; None: the credential's stream, else `transactional`
    send_at: datetime | None = None
    deliver_within: int | None = None  # seconds
    priority: str = NORMAL
    stream_field: str = "stream"  # where the stream came from, to name in an error (a field, or a header)
    # This message's own open/click tracking; None: the stream's default, else the domain's.
    track_opens: bool | None = None
    track_clicks: bool | None = None


def send_at_problem(send_at: datetime, now: datetime | None = None) -> str | None:
    """Why `send_at` is not acceptable (in the past, or more than 7 days ahead), or None."""
    now = now or timezone.now()
    if send_at < now:
        return f"send_at is in the past ({send_at.isoformat()}); leave it out to send now."
    if send_at > now + MAX_SCHEDULE_AHEAD:
        return f"send_at may be at most 7 days ahead (until {(now + MAX_SCHEDULE_AHEAD).isoformat()})."
    return None


def lane_for(stream: Stream, priority: str) -> str:
    """The delivery lane (and so the Celery queue, sending.delivery.queueing) of a stream's mail: broadcast mail
    never shares one with transactional mail, and priority high has a lane of its own within each."""
    base = "broadcast" if stream.is_broadcast else ""
    if priority != HIGH:
        return base
    return f"{base}-high" if base else "high"


def caller_stream(caller: Caller, name: str | None) -> Stream | None:
    """The caller's stream of that name, looked up once per caller (a batch, an SMTP session)."""
    key = (name or "").strip().lower()
    if key not in caller.streams:
        caller.streams[key] = stream_find(caller.organization, key or None)
    return caller.streams[key]


def options_apply(prepared: Prepared, caller: Caller, options: SendOptions) -> None:
    """Put the message on its stream, lane and schedule, with its own tracking. Raises Refused (400 naming the
    field) for a stream the organization does not have, and for tracking asked of a domain without a tracking
    host."""
    stream = caller_stream(caller, options.stream)
    if stream is None:
        raise unknown_stream(options.stream or "", field=options.stream_field)
    message = prepared.message
    if stream.is_broadcast:
        refusal = list_unsubscribe_refusal(bytes(message.raw))
        if refusal is not None:
            raise refusal
    if options.track_opens or options.track_clicks:  # SMTP mail never asks: no domain to look at there
        refusal = tracking_override_refusal(message.domain, opens=options.track_opens, clicks=options.track_clicks)
        if refusal is not None:
            raise refusal
    message.track_opens, message.track_clicks = options.track_opens, options.track_clicks
    now = message.created_at
    message.stream = stream
    message.priority = options.priority
    scheduled = options.send_at is not None and options.send_at > now
    message.send_at = options.send_at if scheduled else None
    if options.deliver_within is not None:
        message.deliver_by = (message.send_at or now) + timedelta(seconds=options.deliver_within)
    lane = lane_for(stream, options.priority)
    priority = 1 if options.priority == HIGH else 0
    for r in prepared.recipients:
        r.lane, r.priority = lane, priority
        if scheduled and r.state == RecipientState.QUEUED:
            r.state, r.next_attempt_at = RecipientState.SCHEDULED, message.send_at
