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
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mail.bounces.reasons import Kind, Reason, classify_reply
from mail.bulk import commit_without_flush
from mail.dkim_sign import SigningKey, dkim_sign_all
from mail.dns import Route, RouteStatus, mx_route
from mail.smtp_client import Reply, SessionLost, SmtpSession, open_to_route
from mail.thread_group_commit import ThreadGroupCommit
from mail.tls_policy.decide import DestinationTls
from mail.trace_headers import feedback_id, with_feedback_id
from sending.delivery.claiming import claim, claim_queued
from sending.delivery.egress import HOST, Choice, Ip, choose, message_stream
from sending.delivery.queueing import LANE_DRAINS, enqueue_destination, pending_clear
from sending.delivery.retry import next_attempt
from sending.delivery.sandbox import CaptureSession, after_recording, capture
from sending.delivery.shaping import provider_for, rate_key, reply_acted_on, reply_rule
from sending.delivery.signing_keys import keys_to_sign_with, private_key
from sending.delivery.slots import Slot, slot_release, slot_renew, slot_take
from sending.delivery.throttling import Throttle, asks_backoff, postpone, throttle_for, wake_schedule
from sending.delivery.tls_policies import (
    destination_tls,
    refusal_details,
    refusal_text,
    session_details,
    sessions_record,
)
from sending.delivery.worker_leases import holding
from sending.feedback.suppressions import BounceFact, bounce_effects
from sending.feedback.tracking import tracked_copies
from sending.models import DkimKey, EventType, Message, Recipient, RecipientState
from sending.observability import oplog
from sending.return_path import return_path, return_path_host
from sending.states import attempts_recorded, claims_waiting, recipient_event_row

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
    # Which transport security policy applied and what it concluded (sending.delivery.tls_policies).
    tls_policy: dict | None = None
    sending_ip: str = ""  # the source address of the session ("" = the host's default)
    # The provider's rule this reply matched (sending.delivery.shaping): the refusal was about our IP.
    shaping_rule: str = ""


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


def connect(
    route: Route, domain: str = "", tls: DestinationTls | None = None, ip: Ip = HOST
) -> tuple[SmtpSession | None, Reply, dict | None]:
    """A session with the best reachable MX host its transport security policies allow (DANE, MTA-STS), trying
    each host and address in order, from the sending IP (bound to its address, EHLO with its name; the host's
    own address and POSTWERK_HOSTNAME when none); else the failure, and the policy refusal behind it, if any."""
    attempt = open_to_route(
        route.hosts,
        connect_timeout=settings.POSTWERK_SMTP_CONNECT_TIMEOUT,
        command_timeout=settings.POSTWERK_SMTP_COMMAND_TIMEOUT,
        tls_check=tls.check if tls is not None else None,
        source_address=ip.address or None,
        helo=ip.ehlo_name or None,
    )
    sessions_record(domain, attempt.tls_results, tls)
    if attempt.session is not None:
        return attempt.session, attempt.reply, None
    refusal = refusal_details(attempt.tls_results, tls)
    reply = attempt.reply
    if refusal is not None:
        reply = Reply(reply.code, reply.enhanced, refusal_text(reply.text, tls))
    return None, reply, refusal


# --- send -------------------------------------------------------------------------------------------------


class Connection:
    """The session to one destination, opened on first use and kept across batches of that destination, within
    the destination's throttle (its connection slot, messages per connection, back-off), from one sending IP at a
    time (sending.delivery.egress picks it per message; a message from another IP ends the session first), within
    the provider's limits for that IP (sending.delivery.shaping)."""

    def __init__(self, route: Route, throttle: Throttle | None = None, domain: str = "") -> None:
        self.route = route
        self.throttle = throttle or Throttle("", None)
        self.domain = domain
        self.tls: DestinationTls | None = None  # the destination's transport security, found at the first connect
        self.refusal: dict | None = None  # why the last connect found no host its policies allow
        self.provider = provider_for(route.hosts)
        self.session: SmtpSession | None = None
        self.failed = False
        self.recycled = False  # closed after its allowed number of messages; the next batch opens a new one
        self.held_back: list[Recipient] = []  # claimed but not attempted: the destination asked us to back off
        self.ip: Ip = HOST  # where the current session leaves from
        self.ip_slot: Slot | None = None  # the IP's connection slot towards the provider (pool IPs with a limit)
        self.ip_sent = 0  # messages over this session from this IP
        self.shaped = False  # a reply matched a provider's rule about this IP: the session ends
        self.waiting: list[tuple[list[Recipient], Choice]] = []  # no IP may take them now

    def choose(self, message: Message, n: int) -> Choice:
        return choose(
            organization_id=message.organization_id,
            domain_id=message.domain_id,
            stream=message_stream(message),
            provider=self.provider,
            n=n,
            can_connect=self.can_connect,
            prefer=self.ip,
        )

    def can_connect(self, ip: Ip) -> bool:
        """Whether a session from `ip` may be had: the one open, or a free slot of the provider's per-IP limit."""
        limit = self.provider.max_connections
        if not ip.address or not limit or (ip == self.ip and self.ip_slot is not None):
            return True
        slot = slot_take(rate_key(ip.address, self.provider.name), limit)
        if slot is None:
            return False
        self.end_session()
        self.ip, self.ip_slot = ip, slot
        return True

    def get(self, ip: Ip = HOST) -> tuple[SmtpSession | None, Reply]:
        if not self.throttle.renew():
            self.failed = True  # the slot's lease ran out under us: finish this message, then stop
        if ip != self.ip:
            self.end_session()
            self.ip = ip
        if self.ip_slot is not None and not slot_renew(self.ip_slot):
            self.failed = True
        if self.session is None or not self.session.is_open:
            if self.tls is None and self.domain:
                self.tls = destination_tls(self.domain, self.route)
            self.session, failure, self.refusal = connect(self.route, self.domain, self.tls, ip)
            self.recycled, self.ip_sent = False, 0
            if self.session is None:
                self.failed = True
                return None, failure
        return self.session, Reply(220, "", "")

    def end_session(self) -> None:
        """End the session from the current IP (another IP is next, or the provider asked), keeping the
        destination's slot: the next session is opened within it."""
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.ip_slot is not None:
            slot, self.ip_slot = self.ip_slot, None
            slot_release(slot)
        self.ip_sent = 0

    def after_message(self, sent: int) -> None:
        """The provider's messages per session from one IP: then a new session."""
        self.ip_sent += sent
        limit = self.provider.max_messages_per_connection
        if self.ip.address and limit and self.ip_sent >= limit:
            self.end_session()
            self.recycled = True  # the next message opens a new session: the loop goes on

    def shaping(self, record: Record) -> Record:
        """`record`, with each outcome first read by the provider's rules: a reply about our IP acts on that IP
        (slowed or suspended towards the provider), ends this session, and defers its recipient instead of
        bouncing it (the refusal was not about the address)."""

        def shaped(outcomes: list[Outcome]) -> None:
            record([self._shaped(o) for o in outcomes])

        return shaped

    def _shaped(self, outcome: Outcome) -> Outcome:
        rule = reply_rule(self.provider, outcome.reply)
        if rule is None:
            return outcome
        reply_acted_on(outcome.sending_ip, self.provider, rule, outcome.reply)
        self.shaped = True
        reply = outcome.reply
        if reply.permanent:
            reply = Reply(
                451,
                "4.7.1",
                f"{self.provider.label} refused sending IP {outcome.sending_ip or 'default'} ({rule.name}): {reply}",
            )
        return replace(outcome, reply=reply, shaping_rule=rule.name)

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
        self.end_session()
        self.throttle.connection_closed()


def deliver_to_domain(connection: Connection, recipients: list[Recipient], record: Record) -> list[Outcome]:
    """Recipients of one destination, one message per transaction, over the destination's connection. The
    outcome of each SMTP transaction is handed to `record` as soon as it ends (see send_message); those of
    recipients never sent (unsignable, no connection) together at the end. Returns them all."""
    outcomes: list[Outcome] = []
    # Sandbox mail needs no route: it goes to the capture whatever the destination's DNS says.
    decided = route_outcomes(connection.route, [r for r in recipients if not r.message.sandbox])
    if decided:
        connection.failed = True
        record(decided)
        outcomes.extend(decided)
        recipients = [r for r in recipients if r.message.sandbox]

    by_message: dict[object, list[Recipient]] = defaultdict(list)
    for r in recipients:
        by_message[r.message_id].append(r)

    unsent: list[Outcome] = []  # nothing of theirs reached an MX: a crash before they are written sends no copy
    # Messages of one organization and sender domain together: they leave from the same pool, so the session
    # from one IP carries them all before another IP's begins.
    groups = sorted(by_message.values(), key=lambda g: (g[0].organization_id, g[0].message.domain_id or 0))
    record = connection.shaping(record)
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
        if message.sandbox:
            # The built-in capture (sending.delivery.sandbox) opens no socket and uses no sending IP.
            sent = send_message(capture(message, group), message, group, data, copies, after_recording(record))
            outcomes.extend(sent)
            continue
        choice = connection.choose(message, len(group))
        if choice.ip is None:  # no sending IP may take it now: it waits, deferred (deliver_batch writes that)
            connection.waiting.append((group, choice))
            continue
        session, failure = connection.get(choice.ip)
        if session is None:
            choice.give_back()
            sent = [Outcome(r, failure, sending_ip=choice.ip.address, tls_policy=connection.refusal) for r in group]
            unsent.extend(sent)
        else:
            sent = send_message(session, message, group, data, copies, record, connection.tls)
            connection.after_message(len(group))
        outcomes.extend(sent)
        if connection.shaped:  # the provider's rule acted on this IP alone: the next message picks again
            connection.shaped = False
            connection.end_session()
            connection.recycled = True
            continue
        if connection.backs_off(sent):
            connection.held_back = [r for rest in groups[i + 1 :] for r in rest]
            break
    record(unsent)
    return outcomes


def send_message(
    session: SmtpSession | CaptureSession,
    message: Message,
    group: list[Recipient],
    data: bytes,
    copies: dict[uuid.UUID, bytes] | None,
    record: Record,
    tls: DestinationTls | None = None,
) -> list[Outcome]:
    """Send the message to its recipients of this destination, recording each outcome as its transaction ends."""
    policy = session_details(session, tls)

    def outcome(r: Recipient, reply: Reply) -> Outcome:
        return Outcome(
            r,
            reply,
            mx_host=session.mx_host,
            tls=session.tls,
            tls_verification=session.tls_verification,
            tls_policy=policy,
            sending_ip=getattr(session, "source_address", None) or "",
        )

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
        r.sending_ip = o.sending_ip
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
        if o.tls_policy is not None:
            details["tls_policy"] = o.tls_policy
        # finished_at is what reputation counts (sending.reputation.rates): sandbox mail never counts.
        finished = None if r.message.sandbox else now
        if o.sending_ip:
            details["sending_ip"] = o.sending_ip
        if o.shaping_rule:
            details["shaping_rule"] = o.shaping_rule
        if o.reply.success:
            r.state, r.delivered_at, r.finished_at = RecipientState.DELIVERED, now, finished
            event_type = EventType.DELIVERED
        elif o.internal:
            r.state, event_type = RecipientState.FAILED, EventType.FAILED
            details.update(reason=o.internal, diagnostic=o.reply.text)
        else:
            # Scheduled mail's age counts from when it could go, not from when it was accepted.
            start = r.message.send_at or r.created_at
            when = None if o.reply.permanent else next_attempt(attempts=r.attempts, now=now, created_at=start)
            sender = _sender_rejected(o.reply)
            deadline = r.message.deliver_by
            if not o.reply.permanent and deadline is not None and (when is None or when > deadline):
                # The next try would come after the message's delivery deadline (`deliver_within`): retries stop
                # here and the application hears `expired`, so it can fall back (a late login code is useless).
                r.state, event_type = RecipientState.EXPIRED, EventType.EXPIRED
                details.update(reason="deadline", deliver_by=deadline.isoformat())
            elif when is not None:
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
                r.finished_at, r.bounce_kind = finished, details["kind"]
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


def deliver(recipient_ids: list[str], domain: str | None = None, lane: str = "") -> int:
    """Deliver what can be claimed of these recipients; returns how many this call handled.

    With `domain` (tasks name their destination), the destination's throttle is asked before anything is
    claimed, and no ids at all means "whatever is queued there" (the task scheduled when throttled mail may go).

    Everything it claims carries this worker's lease (sending.delivery.worker_leases), renewed until it returns.
    `lane`: the task's delivery lane (sending.delivery.queueing.LANES); it drains only what that lane may take.
    """
    with holding():
        if domain is not None:
            return deliver_destination(domain, [], waiting=recipient_ids, lane=lane)
        recipients = claim(recipient_ids)
        by_domain: dict[str, list[Recipient]] = defaultdict(list)
        for r in recipients:
            by_domain[r.domain].append(r)
        return sum(deliver_destination(domain, group) for domain, group in by_domain.items())


def deliver_destination(
    domain: str, recipients: list[Recipient], *, waiting: list[str] | None = None, lane: str = ""
) -> int:
    """This batch, then more queued recipients of the same destination over the same connection.

    Messages submitted one at a time (SMTP, the single-message API) share a pending task per destination
    (sending.delivery.queueing): the task takes its own ids and then whatever else is queued there, claiming them
    exactly as their own tasks would, up to POSTWERK_DELIVERY_DRAIN recipients per task.

    `waiting` (a task naming its destination): ids not claimed yet, claimed here only as far as the
    destination's throttle admits them.
    """
    route = mx_route(domain)
    throttle = throttle_for(domain, route.hosts)
    connection = Connection(route, throttle, domain)
    handled, drained = 0, True
    asked: int | None = None  # how many the last claim asked for, when only the queue's length could stop it
    try:
        if waiting is not None:
            # Before the queue is read: what commits from now on publishes a task of its own.
            pending_clear((domain, lane))
            recipients, asked = claim_first(throttle, domain, waiting, lane)
        elif recipients and throttle.limited:  # claimed by a caller that did not name the destination
            admitted = throttle.admit(len(recipients))
            postpone(domain, [r.pk for r in recipients[admitted:]], throttle.retry_at, claimed=True, lane=lane)
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
            recipients = claim_queued_admitted(throttle, domain, asked, lane)
            if throttle.limited:  # the throttle, not the queue, may have cut the claim short
                asked = None
    finally:
        connection.close()
    if waiting is not None:
        follow_up(domain, throttle, drained, lane)
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
        connection.failed, connection.held_back, connection.waiting = True, [], []
    if connection.held_back:
        lane = connection.held_back[0].lane  # a task's claims are of one lane group; the sweep takes any other
        postpone(domain, [r.pk for r in connection.held_back], connection.throttle.retry_at, claimed=True, lane=lane)
        connection.held_back = []
    waited = waiting_deferred(connection)
    connection.after_batch(len(outcomes))
    return len(outcomes) + waited


def waiting_deferred(connection: Connection) -> int:
    """Recipients no sending IP could take (sending.delivery.egress): deferred until one may, never failed."""
    now, count = timezone.now(), 0
    for group, choice in connection.waiting:
        until = choice.wait_until or now
        claims_waiting(
            group,
            until=until,
            at=now,
            details={"reason": "waiting_for_ip", "diagnostic": choice.why, "provider": connection.provider.name},
        )
        count += len(group)
    connection.waiting = []
    return count


def claim_first(
    throttle: Throttle, domain: str, waiting: list[str], lane: str = ""
) -> tuple[list[Recipient], int | None]:
    """The first batch, and how many were asked for when only the queue's length limits it (else None).

    Unthrottled: the destination's oldest queued recipients, the task's own ids among them unless another worker
    took them; the rest may have skipped publishing because this task was pending. One statement. Throttled: the
    task's own ids as far as the throttle admits them, else queued ones."""
    if not throttle.limited:
        asked = min(settings.POSTWERK_DELIVERY_BATCH, settings.POSTWERK_DELIVERY_DRAIN)
        return claim_queued(domain, asked, lane), asked
    recipients = claim_admitted(throttle, waiting, lane) if waiting else []
    if recipients or throttle.retry_at is not None:  # a refusal already postponed them and scheduled a wake-up
        return recipients, None
    return claim_queued_admitted(throttle, domain, settings.POSTWERK_DELIVERY_BATCH, lane), None


def follow_up(domain: str, throttle: Throttle, drained: bool, lane: str = "") -> None:
    """After a task stopped before its destination's queue was empty, the task that takes the rest.

    The throttle said "not now" (back-off, rate, slot): a wake-up then, not before. Otherwise (drain limit,
    connection failure) one more task now, unless one is pending already."""
    if throttle.retry_at is not None:
        wake_schedule(domain, throttle.retry_at, lane)
    elif not drained:
        enqueue_destination(domain, lane)


def claim_admitted(throttle: Throttle, recipient_ids: list[str], lane: str = "") -> list[Recipient]:
    """Claim as many of these as the destination's throttle lets go now; the rest wait (not attempted)."""
    if not recipient_ids:
        return []
    if not throttle.limited:  # the common case: no rule, no back-off, nothing asked of the database
        return claim(recipient_ids)
    admitted = throttle.admit(len(recipient_ids))
    if not admitted:
        postpone(throttle.domain, recipient_ids, throttle.retry_at, lane=lane)
        return []
    won = claim(recipient_ids[:admitted])
    throttle.refund(admitted - len(won))
    return won


def claim_queued_admitted(throttle: Throttle, domain: str, limit: int, lane: str = "") -> list[Recipient]:
    """Claim queued recipients of the destination, as many as its throttle lets go now (at most `limit`)."""
    if not throttle.limited:  # the common case: one statement finds and claims them
        return claim_queued(domain, limit, lane)
    return claim_admitted(throttle, queued_for(domain, limit, lane), lane)


def queued_for(domain: str, limit: int, lane: str = "") -> list[str]:
    ids = (
        Recipient.objects.filter(state=RecipientState.QUEUED, domain=domain, lane__in=LANE_DRAINS[lane])
        .order_by("-priority", "created_at")
        .values_list("id", flat=True)[:limit]
    )
    return [str(pk) for pk in ids]
