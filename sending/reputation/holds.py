"""Held mail: what submission does with a message whose sender is paused or over its send limit, and the bulk
release / cancel of held mail.

At submission every message is checked against the cached set of paused scopes (its organization, sender
domain, API key or SMTP credential) and then, together, against the send limits (one counter statement per
request). A held recipient is stored `held` with an `held` event instead of `queued` and is not enqueued.
When the organization's limit action (or POSTWERK_LIMIT_ACTION) is `reject`, the request is refused instead
(API 429, SMTP 451 4.7.1), and nothing is stored.

Releasing moves held recipients to `queued` (a `released` event, enqueued after commit); cancelling makes them
`cancelled` (never attempted). Both work in batches of rows, never a query per row. Mail of a scope that is
still paused stays held on release: only resuming the scope lets it go.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Organization
from mail.due import skip_locked_supported
from sending.delivery.queueing import enqueue_after_commit
from sending.errors import Refused
from sending.models import Message, Recipient, RecipientState, ReputationScope
from sending.reputation import send_limits
from sending.reputation.rates import paused_scopes, paused_scopes_fresh
from sending.states import LOCKED_FIELDS, Locked, held_cancelled, held_released

if TYPE_CHECKING:
    from accounts.models import SmtpCredential
    from sending.intake.submission import Prepared
    from sending.models import Domain, Message

REPUTATION_PAUSED = "reputation_paused"
SEND_LIMIT = "send_limit"
HELD_REASONS = (REPUTATION_PAUSED, SEND_LIMIT)
# Retry-After while paused: a pause lasts until a person resumes it, so there is no honest time; an hour.
PAUSED_RETRY_AFTER = 3600
BATCH = 1000


class SendingRefused(Refused):
    """The organization rejects (rather than holds) mail while paused or over its limit."""

    def __init__(self, code: str, message: str, retry_after: int, *, scope: str | None = None) -> None:
        # API 429 with Retry-After; SMTP 451 so the client keeps the message and retries (RFC 3463 §3.8: X.7.1
        # delivery not authorized).
        super().__init__(
            message, code=code, http_status=429, smtp_reply=f"451 4.7.1 {message}", retry_after=retry_after
        )
        self.scope = scope  # what is paused (ReputationScope), for answers that tell them apart (SES's)


def limit_action(organization: Organization) -> str:
    return organization.limit_action or settings.POSTWERK_LIMIT_ACTION


def message_scopes(message: Message) -> list[tuple[str, int]]:
    scopes = [(ReputationScope.ORGANIZATION, message.organization_id)]
    for scope, scope_id in (
        (ReputationScope.DOMAIN, message.domain_id),
        (ReputationScope.API_KEY, message.api_key_id),
        (ReputationScope.SMTP_CREDENTIAL, message.smtp_credential_id),
        (ReputationScope.STREAM, message.stream_id),
    ):
        if scope_id is not None:
            scopes.append((scope, scope_id))
    return scopes


def _paused_hold(message: Message, paused: frozenset[tuple[str, int]]) -> dict | None:
    for scope, scope_id in message_scopes(message):
        if (scope, scope_id) in paused:
            return {"reason": REPUTATION_PAUSED, "scope": scope, "scope_id": scope_id}
    return None


def _paused_message(scope: str) -> str:
    return f"Sending is paused for this {scope.replace('_', ' ')} (reputation); new mail is not accepted."


# --- at submission ----------------------------------------------------------------------------------------

# Per process: organizations whose send limit refused mail, until their window reopens, so an SMTP client
# that rejects hears 451 at MAIL FROM instead of after sending the whole message.
_full_until: dict[int, datetime] = {}
# Recipients that would go out (now, or at their scheduled time): what holds and send limits look at.
_GOING = (RecipientState.QUEUED, RecipientState.SCHEDULED)


def holds_screen(*, organization: Organization, prepared: list[Prepared], now: datetime | None = None) -> None:
    """Decide which messages are held (setting their recipients `held`), or raise SendingRefused."""
    now = now or timezone.now()
    reject = limit_action(organization) == Organization.LimitAction.REJECT
    paused = paused_scopes(organization.pk)
    holds: dict[int, dict] = {}
    if paused:
        for n, p in enumerate(prepared):
            hold = _paused_hold(p.message, paused)
            if hold is not None:
                if reject:
                    raise SendingRefused(
                        "sending_paused", _paused_message(hold["scope"]), PAUSED_RETRY_AFTER, scope=hold["scope"]
                    )
                holds[n] = hold
    # Only messages that would go out count against the limit (not held, not wholly suppressed).
    counted = [n for n, p in enumerate(prepared) if n not in holds and any(r.state in _GOING for r in p.recipients)]
    # A stream's own limits first (counted atomically, as the organization's): what they hold does not count
    # against the organization's.
    streams = send_limits.streams_admit([(n, prepared[n].message) for n in counted], now)
    if streams.holds:
        if reject:
            streams.refund()  # the request stores nothing
            hold = next(iter(streams.holds.values()))
            raise SendingRefused(
                "send_limit_exceeded",
                f"Over the {hold['period']}ly send limit of {hold['limit']} messages of stream {hold['stream']};"
                " retry when the window reopens.",
                max(1, int((datetime.fromisoformat(hold["window_end"]) - now).total_seconds()) + 1),
            )
        holds.update(streams.holds)
        counted = [n for n in counted if n not in streams.holds]
    admission = send_limits.messages_admit(organization=organization, count=len(counted), now=now)
    if admission.over:
        window = admission.window
        assert window is not None
        _full_until[organization.pk] = window.end
        if reject:
            # The admitted share was counted; the request stores nothing, so give it back.
            send_limits.messages_refund(organization=organization, count=admission.allowed, now=now)
            streams.refund()
            raise SendingRefused(
                "send_limit_exceeded",
                f"Over the {window.period}ly send limit of {window.limit} messages; retry when the window reopens.",
                admission.retry_after,
            )
        streams.refund(counted[admission.allowed :])  # held by the organization's limit: not sent on the stream
        for n in counted[admission.allowed :]:
            holds[n] = {
                "reason": SEND_LIMIT,
                "period": window.period,
                "limit": window.limit,
                "window_end": window.end.isoformat(),
            }
    for n, hold in holds.items():
        prepared[n].hold = hold
        for r in prepared[n].recipients:
            if r.state in _GOING:  # scheduled mail keeps its send_at: released before then, it waits for it
                r.state, r.held_reason, r.held_at = RecipientState.HELD, hold["reason"], r.created_at


def smtp_sender_refusal(credential: SmtpCredential, domain: Domain) -> str | None:
    """At MAIL FROM, for organizations that reject: the 451 reply when the answer is already known (a paused
    scope, or a send limit this process saw full), else None. Costs dict lookups, no query."""
    organization = credential.organization
    if limit_action(organization) != Organization.LimitAction.REJECT:
        return None
    paused = paused_scopes(organization.pk)
    for scope, scope_id in (
        (ReputationScope.ORGANIZATION, organization.pk),
        (ReputationScope.DOMAIN, domain.pk),
        (ReputationScope.SMTP_CREDENTIAL, credential.pk),
    ):
        if (scope, scope_id) in paused:
            return f"451 4.7.1 {_paused_message(scope)}"
    full_until = _full_until.get(organization.pk)
    if full_until is not None:
        if timezone.now() < full_until:
            return "451 4.7.1 Over the send limit; retry when the window reopens."
        _full_until.pop(organization.pk, None)
    return None


# --- held mail in bulk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldFilter:
    domain: str | None = None  # the sender domain's name
    held_reason: str | None = None
    api_key_id: int | None = None
    smtp_credential_id: int | None = None
    address: str | None = None  # part of the recipient address
    held_before: datetime | None = None
    held_after: datetime | None = None
    tag: str | None = None


def held_queryset(organization_id: int, f: HeldFilter) -> QuerySet[Recipient]:
    qs = Recipient.objects.filter(organization_id=organization_id, state=RecipientState.HELD)
    if f.domain:
        qs = qs.filter(message__domain__name=f.domain.strip().lower().rstrip("."))
    if f.held_reason:
        qs = qs.filter(held_reason=f.held_reason)
    if f.api_key_id is not None:
        qs = qs.filter(message__api_key_id=f.api_key_id)
    if f.smtp_credential_id is not None:
        qs = qs.filter(message__smtp_credential_id=f.smtp_credential_id)
    if f.address:
        qs = qs.filter(address__icontains=f.address.strip())
    if f.held_before:
        qs = qs.filter(held_at__lt=f.held_before)
    if f.held_after:
        qs = qs.filter(held_at__gte=f.held_after)
    if f.tag:
        qs = qs.filter(message__tag_rows__name=f.tag, message__tag_rows__organization_id=organization_id)
    return qs


def held_count(organization_id: int, f: HeldFilter) -> int:
    return held_queryset(organization_id, f).count()


def _releasable(organization_id: int, qs: QuerySet[Recipient]) -> QuerySet[Recipient]:
    """Leave out mail of scopes still paused: releasing it would bypass the pause."""
    paused = paused_scopes_fresh(organization_id)
    if not paused:
        return qs
    if (ReputationScope.ORGANIZATION, organization_id) in paused:
        return qs.none()
    column = {
        ReputationScope.DOMAIN: "message__domain_id__in",
        ReputationScope.API_KEY: "message__api_key_id__in",
        ReputationScope.SMTP_CREDENTIAL: "message__smtp_credential_id__in",
    }
    blocked = Q()
    for scope, field in column.items():
        ids = [scope_id for s, scope_id in paused if s == scope]
        if ids:
            blocked |= Q(**{field: ids})
    return qs.exclude(blocked)


def held_release(organization_id: int, f: HeldFilter, *, actor: str, dry_run: bool = False) -> int:
    """Queue the matching held mail (except scopes still paused); returns how many recipients (would) go."""
    qs = _releasable(organization_id, held_queryset(organization_id, f))
    if dry_run:
        return qs.count()
    released = _release(qs, actor=actor)
    audit_record(organization=organization_id, action="held.released", changes=_held_audit(f, released))
    return released


def held_cancel(organization_id: int, f: HeldFilter, *, actor: str, dry_run: bool = False) -> int:
    """Cancel the matching held mail (never sent); returns how many recipients (would be) cancelled."""
    qs = held_queryset(organization_id, f)
    if dry_run:
        return qs.count()
    cancelled = _cancel(qs, actor=actor, reason="cancelled")
    audit_record(organization=organization_id, action="held.cancelled", changes=_held_audit(f, cancelled))
    return cancelled


def _held_audit(f: HeldFilter, count: int) -> dict:
    """The filter used (the fields that were set) and how many recipients it moved."""
    used = {k: v for k, v in asdict(f).items() if v not in (None, "")}
    return {"filter": used, "recipients": count}


def _claim_batch(qs: QuerySet[Recipient]) -> list[Locked]:
    rows = qs.order_by("-priority", "held_at", "id")  # priority high first, then oldest
    if skip_locked_supported():
        rows = rows.select_for_update(of=("self",))
    return [Locked(*row) for row in rows.values_list(*LOCKED_FIELDS)[:BATCH]]


def _release(qs: QuerySet[Recipient], *, actor: str) -> int:
    total = 0
    while True:
        now = timezone.now()
        lease_until = now + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE)
        with transaction.atomic():
            rows = _claim_batch(qs)
            if not rows:
                return total
            queued = held_released(rows, actor=actor, at=now, lease_until=lease_until)
            enqueue_after_commit([(str(row.id), row.domain, row.lane) for row in queued])
        total += len(rows)


def _cancel(qs: QuerySet[Recipient], *, actor: str, reason: str) -> int:
    total = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            rows = _claim_batch(qs)
            if not rows:
                return total
            held_cancelled(rows, actor=actor, reason=reason, at=now)
        total += len(rows)


# --- beat -------------------------------------------------------------------------------------------------


def held_expire(now: datetime | None = None) -> int:
    """Cancel held mail older than POSTWERK_HELD_MAX_AGE, with reason `expired`."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.POSTWERK_HELD_MAX_AGE)
    qs = Recipient.objects.filter(state=RecipientState.HELD, held_at__lt=cutoff)
    return _cancel(qs, actor="expiry", reason="expired")


def send_limit_release(now: datetime | None = None) -> int:
    """Release mail held by a send limit, oldest first, up to what the current windows admit (nothing until
    the window that held it has reopened). Returns recipients released."""
    now = now or timezone.now()
    org_ids = set(
        Recipient.objects.filter(state=RecipientState.HELD, held_reason=SEND_LIMIT).values_list(
            "organization_id", flat=True
        )
    )
    released = 0
    for organization in Organization.objects.filter(pk__in=org_ids):
        qs = _releasable(organization.pk, held_queryset(organization.pk, HeldFilter(held_reason=SEND_LIMIT)))
        message_ids = list(
            dict.fromkeys(qs.order_by("-priority", "held_at", "id").values_list("message_id", flat=True)[:BATCH])
        )
        if not message_ids:
            continue
        # A message on a stream with its own limits goes when both the stream's and the organization's admit it.
        found = Message.objects.select_related("stream").in_bulk(message_ids)
        streams = send_limits.streams_admit([(n, found[pk]) for n, pk in enumerate(message_ids)], now)
        going = [pk for n, pk in enumerate(message_ids) if n not in streams.holds]
        admission = send_limits.messages_admit(organization=organization, count=len(going), now=now)
        refused = set(going[admission.allowed :])
        streams.refund(n for n, pk in enumerate(message_ids) if pk in refused)
        if admission.allowed:
            released += _release(qs.filter(message_id__in=going[: admission.allowed]), actor="send_limit")
    return released


def held_maintenance(now: datetime | None = None) -> dict[str, int]:
    started = time.monotonic()
    expired = held_expire(now)
    released = send_limit_release(now)
    return {"expired": expired, "released": released, "ms": int((time.monotonic() - started) * 1000)}
