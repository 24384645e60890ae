"""The delivery stage: claim recipients, route them by MX, send over reused SMTP sessions, record outcomes.

Each step is a small function; `deliver` strings them together. Nothing here raises for an ordinary
failure: every recipient leaves with an Outcome, and `record_outcomes` turns outcomes into states and events, as
soon as each SMTP transaction ends: a worker that dies re-sends at most the transaction it had in flight.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mail.bounces.reasons import Kind, Reason, classify_reply
from mail.bulk import commit_without_flush
from mail.dkim_sign import SigningKey, dkim_sign_all
from mail.dns import Route, RouteStatus, mx_route
from mail.smtp_client import Reply, SessionLost, SmtpSession, open_to_route
from mail.thread_group_commit import ThreadGroupCommit
from mail.trace_headers import feedback_id, with_feedback_id
from sending.delivery.claiming import claim, claim_queued
from sending.delivery.queueing import enqueue_destination, pending_clear
from sending.delivery.retry import next_attempt
from sending.delivery.signing_keys import keys_to_sign_with, private_key
from sending.delivery.throttling import Throttle, asks_backoff, postpone, throttle_for, wake_schedule
from sending.delivery.worker_leases import holding
from sending.feedback.suppressions import BounceFact, bounce_effects
from sending.feedback.tracking import tracked_copies
from sending.models import DkimKey, EventType, Message, Recipient, RecipientState
from sending.observability import oplog
from sending.return_path import return_path, return_path_host
from sending.states import attempts_recorded, recipient_event_row

log = logging.getLogger(__name__)

Record = Callable[[list["Outcome"]], None]


@dataclass(frozen=True)
class Outcome:
    recipient: Recipient
    reply: Reply
    mx_host: str = ""
    tls: bool | None = None
    tls_verification: str = ""  # verified, failed: <why>, none (mail.tls_verify); "" when no session
    # A permanent failure that is ours, not the receiver's (e.g. the message cannot be signed): `failed`, with
    # this reason in its event (no_signing_key, signing_failed).
    internal: str = ""


# --- sign -------------------------------------------------------------------------------------------------


class NoSigningKey(LookupError):
    """The message's domain has no DKIM key to sign with: a set-up problem, said once in the recipient's event."""


def signed_message(message: Message) -> bytes:
    """The message as it goes on the wire: DKIM-signed with each active key of its domain (RSA, and Ed25519
    when the domain has one), newest first."""
    return dkim_sign_all(outgoing_raw(message), signing_keys(message))


def outgoing_raw(message: Message) -> bytes:
    """The stored message with the Feedback-ID header on top (unless the sender set one), before tracking and
    signing, so the signature covers it. Added here rather than at accept time so that it applies to API and
    SMTP mail alike and to messages queued before it existed: one prepend per message."""
    raw = bytes(message.raw)
    if message.domain is None:
        return raw
    value = feedback_id(tags=message.tags, organization_id=message.organization_id, domain=message.domain.name)
    return with_feedback_id(raw, value)


def signing_keys(message: Message) -> list[SigningKey]:
    keys = keys_to_sign_with(message.domain_id)
    if not keys:
        name, pk = (message.domain.name, message.domain_id) if message.domain_id else ("the sender domain", "{id}")
        raise NoSigningKey(
            f"{name} has no DKIM key to sign with: publish its DKIM record and verify the domain "
            f"(POST /api/v1/domains/{pk}/verify), or add a key (POST /api/v1/domains/{pk}/rotate-dkim)"
        )
    newest: dict[str, DkimKey] = {}
    for key in keys:
        newest.setdefault(key.algorithm, key)
    return [
        SigningKey(key.domain.name, key.selector, key.algorithm, private_key(key))
        for key in sorted(newest.values(), key=lambda k: k.algorithm != DkimKey.Algorithm.RSA)
    ]


# --- route and connect ------------------------------------------------------------------------------------


def route_outcomes(route: Route, recipients: list[Recipient]) -> list[Outcome] | None:
    """Outcomes decided by DNS alone (null MX, no such domain, DNS failure), or None when there is a route."""
    if route.status is RouteStatus.NULL_MX:
        reply = Reply(556, "5.1.10", route.detail)  # RFC 7505 §4.2
    elif route.status is RouteStatus.NO_DOMAIN:
        reply = Reply(550, "5.1.2", route.detail)
    elif route.status is RouteStatus.TEMPORARY:
        reply = Reply(451, "4.4.3", route.detail)
    else:
        return None
    return [Outcome(r, reply) for r in recipients]


def connect(route: Route) -> tuple[SmtpSession | None, Reply]:
    """A session with the best reachable MX host, trying each host and address in order."""
    attempt = open_to_route(
        route.hosts,
        connect_timeout=settings.POSTWERK_SMTP_CONNECT_TIMEOUT,
        command_timeout=settings.POSTWERK_SMTP_COMMAND_TIMEOUT,
    )
    return attempt.session, attempt.reply


# --- send -------------------------------------------------------------------------------------------------


class Connection:
    """The session to one destination, opened on first use and kept across batches of that destination, within
    the destination's throttle (its connection slot, messages per connection, back-off)."""

    def __init__(self, route: Route, throttle: Throttle | None = None) -> None:
        self.route = route
        self.throttle = throttle or Throttle("", None)
        self.session: SmtpSession | None = None
        self.failed = False
        self.recycled = False  # closed after its allowed number of messages; the next batch opens a new one
        self.held_back: list[Recipient] = []  # claimed but not attempted: the destination asked us to back off

    def get(self) -> tuple[SmtpSession | None, Reply]:
        if not self.throttle.renew():
            self.failed = True  # the slot's lease ran out under us: finish this message, then stop
        if self.session is None or not self.session.is_open:
            self.session, failure = connect(self.route)
            self.recycled = False
            if self.session is None:
                self.failed = True
                return None, failure
        return self.session, Reply(220, "", "")

    @property
    def usable(self) -> bool:
        return not self.failed and (self.recycled or (self.session is not None and self.session.is_open))

    def backs_off(self, outcomes: list[Outcome]) -> bool:
        """True when a reply asked the whole destination to wait: it is backed off and this session ends."""
        reply = next((o.reply for o in outcomes if not o.reply.success and asks_backoff(o.reply)), None)
        if reply is None:
            return False
        self.throttle.backoff(reply)
        self.failed = True
        self.close()
        return True

    def after_batch(self, sent: int) -> None:
        if self.throttle.connection_full(sent) and self.usable:
            self.close()
            self.recycled = True

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.throttle.connection_closed()


def deliver_to_domain(connection: Connection, recipients: list[Recipient], record: Record) -> list[Outcome]:
    """Recipients of one destination, one message per transaction, over the destination's connection. The
    outcome of each SMTP transaction is handed to `record` as soon as it ends (see send_message); those of
    recipients never sent (unsignable, no connection) together at the end. Returns them all."""
    decided = route_outcomes(connection.route, recipients)
    if decided is not None:
        connection.failed = True
        record(decided)
        return decided

    by_message: dict[object, list[Recipient]] = defaultdict(list)
    for r in recipients:
        by_message[r.message_id].append(r)

    outcomes: list[Outcome] = []
    unsent: list[Outcome] = []  # nothing of theirs reached an MX: a crash before they are written sends no copy
    groups = list(by_message.values())
    for i, group in enumerate(groups):
        message = group[0].message
        try:
            # With tracking on, each recipient has its own copy (pixel, links, unsubscribe URL) and signature.
            raw = outgoing_raw(message)
            copies = tracked_copies(message, group, raw)
            keys = signing_keys(message)
            if copies is None:
                data = dkim_sign_all(raw, keys)
            else:
                copies = {pk: dkim_sign_all(copy, keys) for pk, copy in copies.items()}
                data = max(copies.values(), key=len)
        except Exception as exc:  # a missing or unreadable key is ours to fix, not a reason to retry forever
            if isinstance(exc, NoSigningKey):  # a set-up problem, not a bug: one line, no traceback per message
                log.warning("cannot sign message %s: %s", message.pk, exc)
            else:
                log.exception("cannot sign message %s", message.pk)
            reply = Reply(554, "5.3.0", f"message could not be signed: {exc}")
            why = "no_signing_key" if isinstance(exc, NoSigningKey) else "signing_failed"
            unsigned = [Outcome(r, reply, internal=why) for r in group]
            unsent.extend(unsigned)
            outcomes.extend(unsigned)
            continue
        session, failure = connection.get()
        if session is None:
            sent = [Outcome(r, failure) for r in group]
            unsent.extend(sent)
        else:
            sent = send_message(session, message, group, data, copies, record)
        outcomes.extend(sent)
        if connection.backs_off(sent):
            connection.held_back = [r for rest in groups[i + 1 :] for r in rest]
            break
    record(unsent)
    return outcomes


def send_message(
    session: SmtpSession,
    message: Message,
    group: list[Recipient],
    data: bytes,
    copies: dict[uuid.UUID, bytes] | None,
    record: Record,
) -> list[Outcome]:
    """Send the message to its recipients of this destination, recording each outcome as its transaction ends."""

    def outcome(r: Recipient, reply: Reply) -> Outcome:
        return Outcome(r, reply, mx_host=session.mx_host, tls=session.tls, tls_verification=session.tls_verification)

    def recorded(outcomes: list[Outcome]) -> list[Outcome]:
        record(outcomes)
        return outcomes

    if message.smtputf8 and not session.supports_smtputf8:
        reply = Reply(553, "5.6.7", f"{session.mx_host} does not support SMTPUTF8 (RFC 6531)")
        return recorded([outcome(r, reply) for r in group])
    if session.max_size is not None and len(data) > session.max_size:
        reply = Reply(552, "5.3.4", f"message of {len(data)} bytes exceeds {session.mx_host}'s limit")
        return recorded([outcome(r, reply) for r in group])
    # One transaction per recipient: each gets its own VERP return path, so a bounce names exactly one delivery.
    # They share the connection, so the cost is a few pipelined round trips, not a new session.
    host = return_path_host(message.domain)
    outcomes = []
    for i, r in enumerate(group):
        try:
            replies = session.send(
                mail_from=return_path(r.pk, host),
                rcpts=[r.address],
                data=copies[r.pk] if copies else data,
                smtputf8=message.smtputf8,
            )
        except SessionLost as lost:
            return outcomes + recorded([outcome(rest, lost.reply) for rest in group[i:]])
        # Recorded before the next transaction starts: once the MX has taken a message, only this write stands
        # between it and a second copy should the worker die now (the duplicate window is one transaction).
        outcomes.extend(recorded([outcome(r, replies[r.address])]))
    return outcomes


# --- record -----------------------------------------------------------------------------------------------


def record_outcomes(outcomes: list[Outcome]) -> None:
    """Write each recipient's new state, its `sent` event and its outcome's event, in one transaction."""
    if not outcomes:
        return
    now = timezone.now()
    events, bounces = [], []
    for o in outcomes:
        r = o.recipient
        # The attempt's `sent` event, at the claim's time and with the sequence number the claim reserved.
        events.append(
            recipient_event_row(
                r, EventType.SENT, r.sending_since or now, {"address": r.address, "attempt": r.attempts}, r.event_seq
            )
        )
        r.last_code, r.last_enhanced, r.last_text = o.reply.code, o.reply.enhanced, o.reply.text[:2000]
        r.mx_host, r.tls, r.updated_at, r.sending_since, r.claim_token = o.mx_host, o.tls, now, None, None
        r.next_attempt_at = None  # no attempt is coming, unless the outcome is a deferral (set below)
        details = {
            "address": r.address,
            "attempt": r.attempts,
            "smtp": _reply_json(o.reply),
            "mx_host": o.mx_host,
        }
        if o.tls is not None:
            details["tls"] = o.tls
        if o.tls_verification:
            details["tls_verification"] = o.tls_verification
        if o.reply.success:
            r.state, r.delivered_at, r.finished_at = RecipientState.DELIVERED, now, now
            event_type = EventType.DELIVERED
        elif o.internal:
            r.state, event_type = RecipientState.FAILED, EventType.FAILED
            details.update(reason=o.internal, diagnostic=o.reply.text)
        else:
            when = None if o.reply.permanent else next_attempt(attempts=r.attempts, now=now, created_at=r.created_at)
            sender = _sender_rejected(o.reply)
            if when is not None:
                r.state, r.next_attempt_at, event_type = RecipientState.DEFERRED, when, EventType.DEFERRED
                details["next_attempt_at"] = when.isoformat()
                if sender:
                    details["reason"] = str(Reason.SENDER_REJECTED)
            elif sender:
                # Our sender was refused, not the recipient: the delivery fails, with no bounce counted against
                # the address (no suppression, no bounce_kind for reputation); the event says why.
                r.state, event_type = RecipientState.FAILED, EventType.FAILED
                details.update(_bounce_details(o.reply))
            else:
                r.state, event_type = RecipientState.BOUNCED, EventType.BOUNCED
                details.update(_bounce_details(o.reply, expired=not o.reply.permanent))
                r.finished_at, r.bounce_kind = now, details["kind"]
                bounces.append(_bounce_fact(r, details))
        # Counted in memory: this worker's claim keeps every other writer of the row's events away meanwhile.
        r.event_seq += 1
        events.append(recipient_event_row(r, event_type, now, details, r.event_seq))
    with transaction.atomic():
        # Written once per SMTP transaction, and waiting for the disk flush was most of that write's cost (about 4
        # of 5 ms a recipient on PostgreSQL). Should PostgreSQL itself crash before the flush, the outcome is
        # forgotten: the recipient is still `sending` under a lease nobody renews, and is sent again. A duplicate,
        # never a loss.
        commit_without_flush()
        attempts_recorded([o.recipient for o in outcomes], events)
        if bounces:
            bounce_effects(bounces)
    oplog.outcomes_recorded(outcomes)


def _reply_json(reply: Reply) -> dict[str, object]:
    return {"code": reply.code, "enhanced": reply.enhanced, "text": reply.text}


def _sender_rejected(reply: Reply) -> bool:
    """The reply refused our envelope sender (at MAIL FROM, or in the words of a later reply)."""
    classified = classify_reply(reply.code, reply.enhanced, reply.text, at_mail_from=reply.at_mail_from)
    return classified.reason is Reason.SENDER_REJECTED


def _bounce_details(reply: Reply, *, expired: bool = False) -> dict[str, str]:
    """A synchronous rejection, classified exactly as a DSN would be; an expiry is always a soft bounce."""
    if expired:
        reason, kind, status = Reason.EXPIRED, Kind.SOFT, "4.4.7"
    else:
        classified = classify_reply(reply.code, reply.enhanced, reply.text, at_mail_from=reply.at_mail_from)
        reason, kind, status = classified.reason, classified.kind, reply.enhanced
    return {
        "kind": str(kind),
        "reason": str(reason),
        "status": status,
        "diagnostic": f"{reply.code} {reply.enhanced} {reply.text}".replace("  ", " ")[:2000],
        "source": "smtp",
    }


def _bounce_fact(r: Recipient, details: dict) -> BounceFact:
    return BounceFact(
        organization_id=r.organization_id,
        address=r.address,
        message_id=r.message_id,
        kind=details["kind"],
        reason=details["reason"],
        status=details["status"],
        diagnostic=details["diagnostic"],
    )


# --- the whole stage ----------------------------------------------------------------------------------------


def deliver(recipient_ids: list[str], domain: str | None = None) -> int:
    """Deliver what can be claimed of these recipients; returns how many this call handled.

    With `domain` (tasks name their destination), the destination's throttle is asked before anything is
    claimed, and no ids at all means "whatever is queued there" (the task scheduled when throttled mail may go).

    Everything it claims carries this worker's lease (sending.delivery.worker_leases), renewed until it returns.
    """
    with holding():
        if domain is not None:
            return deliver_destination(domain, [], waiting=recipient_ids)
        recipients = claim(recipient_ids)
        by_domain: dict[str, list[Recipient]] = defaultdict(list)
        for r in recipients:
            by_domain[r.domain].append(r)
        return sum(deliver_destination(domain, group) for domain, group in by_domain.items())


def deliver_destination(domain: str, recipients: list[Recipient], *, waiting: list[str] | None = None) -> int:
    """This batch, then more queued recipients of the same destination over the same connection.

    Messages submitted one at a time (SMTP, the single-message API) share a pending task per destination
    (sending.delivery.queueing): the task takes its own ids and then whatever else is queued there, claiming them
    exactly as their own tasks would, up to POSTWERK_DELIVERY_DRAIN recipients per task.

    `waiting` (a task naming its destination): ids not claimed yet, claimed here only as far as the
    destination's throttle admits them.
    """
    route = mx_route(domain)
    throttle = throttle_for(domain, route.hosts)
    connection = Connection(route, throttle)
    handled, drained = 0, True
    asked: int | None = None  # how many the last claim asked for, when only the queue's length could stop it
    try:
        if waiting is not None:
            # Before the queue is read: what commits from now on publishes a task of its own.
            pending_clear(domain)
            recipients, asked = claim_first(throttle, domain, waiting)
        elif recipients and throttle.limited:  # claimed by a caller that did not name the destination
            admitted = throttle.admit(len(recipients))
            postpone(domain, [r.pk for r in recipients[admitted:]], throttle.retry_at, claimed=True)
            recipients = recipients[:admitted]
        while recipients:
            handled += deliver_batch(connection, domain, recipients)
            if asked is not None and len(recipients) < asked:
                break  # the queue was empty at that claim; what committed since publishes a task of its own
            room = settings.POSTWERK_DELIVERY_DRAIN - handled
            if room <= 0 or not connection.usable:
                drained = False
                break
            asked = min(room, settings.POSTWERK_DELIVERY_BATCH)
            recipients = claim_queued_admitted(throttle, domain, asked)
            if throttle.limited:  # the throttle, not the queue, may have cut the claim short
                asked = None
    finally:
        connection.close()
    if waiting is not None:
        follow_up(domain, throttle, drained)
    return handled


# The outcomes of this worker process's threads, written together (mail.thread_group_commit): a thread that ends
# an SMTP transaction waits for the commit holding its outcome before it starts the next, so the duplicate window
# stays one transaction per thread, while the threads share one commit per round instead of one each (#21: one
# commit per SMTP transaction had roughly halved delivery throughput).
outcome_writer: ThreadGroupCommit[Outcome] = ThreadGroupCommit(lambda outcomes: record_outcomes(outcomes))


def deliver_batch(connection: Connection, domain: str, recipients: list[Recipient]) -> int:
    """Send one claimed batch, recording outcomes as they come; returns how many recipients it handled."""
    recorded: list[Outcome] = []

    def record(outcomes: list[Outcome]) -> None:
        outcome_writer.submit(outcomes)
        recorded.extend(outcomes)

    try:
        outcomes = deliver_to_domain(connection, recipients, record)
    except Exception as exc:  # a bug must not strand the rest of the batch in `sending`: defer it and say why
        log.exception("delivery to %s failed", domain)
        done = {o.recipient.pk for o in recorded}
        reply = Reply(451, "4.3.0", f"internal error: {exc}")
        rest = [Outcome(r, reply) for r in recipients if r.pk not in done]
        record_outcomes(rest)
        outcomes = recorded + rest
        connection.failed, connection.held_back = True, []
    if connection.held_back:
        postpone(domain, [r.pk for r in connection.held_back], connection.throttle.retry_at, claimed=True)
        connection.held_back = []
    connection.after_batch(len(outcomes))
    return len(outcomes)


def claim_first(throttle: Throttle, domain: str, waiting: list[str]) -> tuple[list[Recipient], int | None]:
    """The first batch, and how many were asked for when only the queue's length limits it (else None).

    Unthrottled: the destination's oldest queued recipients, the task's own ids among them unless another worker
    took them; the rest may have skipped publishing because this task was pending. One statement. Throttled: the
    task's own ids as far as the throttle admits them, else queued ones."""
    if not throttle.limited:
        asked = min(settings.POSTWERK_DELIVERY_BATCH, settings.POSTWERK_DELIVERY_DRAIN)
        return claim_queued(domain, asked), asked
    recipients = claim_admitted(throttle, waiting) if waiting else []
    if recipients or throttle.retry_at is not None:  # a refusal already postponed them and scheduled a wake-up
        return recipients, None
    return claim_queued_admitted(throttle, domain, settings.POSTWERK_DELIVERY_BATCH), None


def follow_up(domain: str, throttle: Throttle, drained: bool) -> None:
    """After a task stopped before its destination's queue was empty, the task that takes the rest.

    The throttle said "not now" (back-off, rate, slot): a wake-up then, not before. Otherwise (drain limit,
    connection failure) one more task now, unless one is pending already."""
    if throttle.retry_at is not None:
        wake_schedule(domain, throttle.retry_at)
    elif not drained:
        enqueue_destination(domain)


def claim_admitted(throttle: Throttle, recipient_ids: list[str]) -> list[Recipient]:
    """Claim as many of these as the destination's throttle lets go now; the rest wait (not attempted)."""
    if not recipient_ids:
        return []
    if not throttle.limited:  # the common case: no rule, no back-off, nothing asked of the database
        return claim(recipient_ids)
    admitted = throttle.admit(len(recipient_ids))
    if not admitted:
        postpone(throttle.domain, recipient_ids, throttle.retry_at)
        return []
    won = claim(recipient_ids[:admitted])
    throttle.refund(admitted - len(won))
    return won


def claim_queued_admitted(throttle: Throttle, domain: str, limit: int) -> list[Recipient]:
    """Claim queued recipients of the destination, as many as its throttle lets go now (at most `limit`)."""
    if not throttle.limited:  # the common case: one statement finds and claims them
        return claim_queued(domain, limit)
    return claim_admitted(throttle, queued_for(domain, limit))


def queued_for(domain: str, limit: int) -> list[str]:
    ids = Recipient.objects.filter(state=RecipientState.QUEUED, domain=domain).values_list("id", flat=True)[:limit]
    return [str(pk) for pk in ids]
