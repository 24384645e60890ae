"""Processing what arrived on the inbound MX: classify it, find the delivery it is about, apply the effects.

The raw message is already committed (inbound_intake). Here it is parsed by the pure classifier
(mail.bounces), matched to exactly one recipient delivery through its VERP token (or, for feedback reports
sent to a feedback address, through the original's return path or Message-ID), and applied: a bounce turns the
delivery `bounced` and may suppress the address; a complaint is an event and a suppression. Anything that cannot
be attributed safely (a forged or unknown token, a token presented at another organization's return-path host)
is kept and marked `ignored` with the reason, never applied.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, replace
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mail.bounces.parse import Report, ReportRecipient, parse_report
from mail.bounces.reasons import Reason as BounceReason
from mail.errors import PostwerkError
from sending.feedback.dmarc_reports import dmarc_report_keep
from sending.feedback.inbound_intake import DMARC_REPORT, is_return_path_host
from sending.feedback.suppressions import BounceFact, Reason, bounce_effects, suppression_add
from sending.models import EventType, InboundMessage, Recipient, RecipientState
from sending.return_path import is_verp, recipient_id_from_return_path
from sending.states import complaint_recorded, recipient_changed

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
State = InboundMessage.State


class NotApplied(PostwerkError):
    """The report is kept but changes nothing; the message says why."""

    state = State.IGNORED


class Unmatched(NotApplied):
    """A bounce or complaint that no delivery can be found for: kept as `unmatched`, shown on the queue page."""

    state = State.UNMATCHED


def inbound_process(inbound_id: uuid.UUID | str) -> str:
    """Process one stored inbound message; returns its final state. Safe to run twice."""
    updated = InboundMessage.objects.filter(pk=inbound_id, state=State.RECEIVED).update(attempts=F("attempts") + 1)
    if not updated:
        return "gone"
    inbound = InboundMessage.objects.get(pk=inbound_id)
    try:
        if inbound.type == DMARC_REPORT:
            return _keep_dmarc_report(inbound)
        report = parse_report(bytes(inbound.raw))
        return _apply(inbound, report)
    except Exception as exc:  # a classifier or database bug: keep the raw message, retry a few times
        log.exception("processing inbound message %s failed", inbound_id)
        final = inbound.attempts >= MAX_ATTEMPTS
        InboundMessage.objects.filter(pk=inbound.pk, state=State.RECEIVED).update(
            state=State.FAILED if final else State.RECEIVED,
            note=f"processing failed: {exc}"[:2000],
            next_attempt_at=timezone.now() + timedelta(seconds=60 * inbound.attempts),
        )
        return State.FAILED if final else State.RECEIVED


def _keep_dmarc_report(inbound: InboundMessage) -> str:
    """A DMARC or TLS report is not a bounce: read and store it (`processed`), or keep it as received (`ignored`)
    when it cannot be read or is about no domain here."""
    note, summary = dmarc_report_keep(inbound)
    state = State.PROCESSED if "report" in summary else State.IGNORED
    updated = InboundMessage.objects.filter(pk=inbound.pk, state=State.RECEIVED).update(
        state=state,
        note=note,
        result=summary,
        organization_id=inbound.organization_id,
        processed_at=timezone.now(),
    )
    return state if updated else "gone"


def _apply(inbound: InboundMessage, report: Report) -> str:
    with transaction.atomic():
        locked = InboundMessage.objects.select_for_update().filter(pk=inbound.pk, state=State.RECEIVED).first()
        if locked is None:
            return "gone"  # another worker finished it
        locked.type, locked.result = report.type, _report_json(report)
        try:
            if report.type == "bounce":
                _apply_bounce(locked, report)
            elif report.type == "complaint":
                _apply_complaint(locked, report)
            elif report.type == "autoreply":
                raise NotApplied("an auto-reply (out of office, vacation or challenge), not a bounce")
            else:
                raise NotApplied("not a bounce, complaint or auto-reply Postwerk recognises")
            locked.state = State.PROCESSED
        except NotApplied as why:
            locked.state, locked.note = why.state, str(why)
            if why.state == State.UNMATCHED and locked.organization_id is None:
                # Came to one organization's return-path host: that organization sees it (API, dashboard).
                locked.organization_id = _host_organization(locked)
        locked.processed_at = timezone.now()
        locked.save()
        return locked.state


def _apply_bounce(inbound: InboundMessage, report: Report) -> None:
    failed = [r for r in report.recipients if r.action in ("failed", "")]
    unnamed = report.unnamed if not report.recipients else None
    if not failed and unnamed is not None and unnamed.action == "failed" and unnamed.reason != BounceReason.OTHER:
        # The notice names nobody but says why: the VERP return path it came back to says whose delivery failed.
        # (One that says nothing either, such as an empty delivery-status, is not enough to act on.)
        recipient = _delivery(inbound, report, [], unnamed=True)
        entry = replace(unnamed, address=recipient.address, matched_by=f"verp+{unnamed.matched_by}")
        _bounce_recorded(inbound, report, recipient, entry)
        return
    if not failed:
        delayed = any(r.action == "delayed" for r in [*report.recipients, *filter(None, [unnamed])])
        raise NotApplied("a delay notice: the remote server is still trying" if delayed else "no failed recipient")
    recipient = _delivery(inbound, report, [r.address for r in failed])
    entry = _matching(failed, recipient.address)
    _bounce_recorded(inbound, report, recipient, entry)


def _bounce_recorded(inbound: InboundMessage, report: Report, recipient: Recipient, entry: ReportRecipient) -> None:
    if entry.address.lower() != recipient.address.lower() and _is_daemon(entry.address):
        # A report about a report (a DSN that failed to reach a MAILER-DAEMON): nothing about our delivery.
        raise NotApplied(f"a bounce of a bounce (failed recipient {entry.address})")
    inbound.recipient, inbound.organization_id = recipient, recipient.organization_id
    now = timezone.now()
    details = {
        "address": recipient.address,
        "kind": entry.kind,
        "reason": entry.reason,
        "status": entry.status,
        "diagnostic": entry.diagnostic[:2000],
        "remote_mta": entry.remote_mta,
        "matched_by": entry.matched_by,
        "source": "dsn",
        "inbound_id": str(inbound.pk),
    }
    reply = {"last_enhanced": entry.status[:16], "last_text": entry.diagnostic[:2000], "claim_token": None}
    if entry.reason == BounceReason.SENDER_REJECTED:
        # A relay refused our sender further on: the delivery failed, but not because of the recipient, so
        # nothing counts against the address (no suppression, no bounce for reputation); the event says why.
        recipient_changed(recipient, EventType.FAILED, details, at=now, state=RecipientState.FAILED, **reply)
        return
    # A DSN after a `delivered` means a relay accepted and then failed: the delivery did not arrive after all.
    # Reputation counts the outcome when it became known, and only hard bounces in the bounce rate.
    recipient_changed(
        recipient,
        EventType.BOUNCED,
        details,
        at=now,
        state=RecipientState.BOUNCED,
        finished_at=now,
        bounce_kind=entry.kind,
        **reply,
    )
    bounce_effects(
        [
            BounceFact(
                organization_id=recipient.organization_id,
                address=recipient.address,
                message_id=recipient.message_id,
                kind=entry.kind,
                reason=entry.reason,
                status=entry.status,
                diagnostic=entry.diagnostic,
            )
        ]
    )


def _apply_complaint(inbound: InboundMessage, report: Report) -> None:
    recipient = _delivery(inbound, report, [r.address for r in report.recipients])
    inbound.recipient, inbound.organization_id = recipient, recipient.organization_id
    details = {
        "address": recipient.address,
        "feedback_type": report.feedback_type or "abuse",
        "matched_by": report.recipients[0].matched_by if report.recipients else "",
        "source": "arf",
        "inbound_id": str(inbound.pk),
    }
    complaint_recorded(recipient, details)
    suppression_add(
        organization_id=recipient.organization_id,
        address=recipient.address,
        reason=Reason.COMPLAINT,
        details={"feedback_type": report.feedback_type or "abuse"},
        source_message_id=recipient.message_id,
        created_by="complaint",
    )


def _delivery(inbound: InboundMessage, report: Report, addresses: list[str], *, unnamed: bool = False) -> Recipient:
    """The one recipient delivery this report is about, or NotApplied saying why it cannot be trusted
    (Unmatched when nothing names a delivery at all)."""
    tokens = [a for a in inbound.rcpt_to if is_verp(a)]
    if report.original_sender and is_verp(report.original_sender):
        tokens.append(report.original_sender)
    for address in tokens:
        recipient_id = recipient_id_from_return_path(address)
        if recipient_id is None:
            raise NotApplied(f"forged or damaged return-path token in {address}")
        recipient = Recipient.objects.select_related("message").filter(pk=recipient_id).first()
        if recipient is None:
            raise NotApplied(f"the return-path token in {address} names no delivery (deleted?)")
        _same_organization(inbound, recipient)
        return recipient
    # A feedback address (fbl@...) with no token: the original's Message-ID and the complained-about address.
    if report.original_message_id and addresses:
        wanted = {a.lower() for a in addresses}
        candidates = Recipient.objects.select_related("message").filter(message__message_id=report.original_message_id)
        for recipient in candidates:
            if recipient.address.lower() in wanted:
                _same_organization(inbound, recipient)
                return recipient
    if unnamed:
        raise Unmatched("a report that names no recipient and came to no return-path token")
    raise Unmatched("no return-path token or known Message-ID: cannot tell which delivery this is about")


def _same_organization(inbound: InboundMessage, recipient: Recipient) -> None:
    """A report that arrived at one organization's return-path host may only touch that organization's mail."""
    for address in inbound.rcpt_to:
        host = address.strip("<>").rpartition("@")[2]
        owner = is_return_path_host(host)
        if owner is True:
            continue  # the platform's shared return-path domain: the HMAC token alone authenticates
        if owner and owner.organization_id != recipient.organization_id:
            raise NotApplied(f"{address} belongs to another organization than the delivery it names")


def _host_organization(inbound: InboundMessage) -> int | None:
    for address in inbound.rcpt_to:
        owner = is_return_path_host(address.strip("<>").rpartition("@")[2])
        if owner and owner is not True:
            return owner.organization_id
    return None


def _matching(entries: list[ReportRecipient], address: str) -> ReportRecipient:
    for entry in entries:
        if entry.address.lower() == address.lower():
            return entry
    return entries[0]  # a forwarder rewrote the address; the VERP token already says whose delivery it is


def _is_daemon(address: str) -> bool:
    return address.partition("@")[0].lower() in ("mailer-daemon", "postmaster", "double-bounce")


def _report_json(report: Report) -> dict:
    data = asdict(report)
    for r in data.get("recipients", []):
        r["diagnostic"] = r.get("diagnostic", "")[:2000]
    return data


def inbound_due(now=None, limit: int = 1000) -> list[str]:  # type: ignore[no-untyped-def]
    """Stored reports whose processing task was lost; leased again so the next sweep skips them."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            InboundMessage.objects.filter(state=State.RECEIVED, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        InboundMessage.objects.filter(pk__in=ids).update(
            next_attempt_at=now + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE)
        )
    return [str(pk) for pk in ids]
