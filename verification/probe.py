"""The SMTP probe: ask a domain's MX about several of its addresses over one connection, and never send.

Per connection: EHLO as POSTWERK_HOSTNAME, STARTTLS when offered (mail.smtp_client.SmtpSession), then per
address one transaction MAIL FROM:<verification sender> / RCPT TO:<address> / RSET (RFC 5321 §4.1.1.5), so one
refused address cannot taint the next. The first transaction also names a random address that cannot exist:
a domain that accepts it accepts everything (a catch-all), and then an accepted address proves nothing.
DATA is never sent. The connection counts against the MX host's slots (verification.slots).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.conf import settings

from mail.dns import Route
from mail.smtp_client import Reply, SessionLost, SmtpSession, open_to_route
from verification.checks import ProbeOutcome, Stage
from verification.slots import Slot, slot_acquire, slot_release, slot_renew

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    envelope: str  # local part as given, ASCII domain
    smtputf8: bool


def verification_sender() -> str:
    return settings.POSTWERK_VERIFY_MAIL_FROM or f"verify@{settings.POSTWERK_RETURN_PATH_DOMAIN}"


def random_address(domain: str) -> str:
    # 20 random hex characters: no real mailbox is called that.
    return f"pw-verify-{secrets.token_hex(10)}@{domain}"


def probe_domain(
    domain: str, route: Route, targets: list[Target], *, catch_all: bool | None, slot_wait: float
) -> dict[str, ProbeOutcome]:
    """Probe `targets` (all at `domain`) over one connection to the best reachable MX host.

    `catch_all` is what is already known about the domain (None: unknown, so this connection finds out).
    Every target gets an outcome; nothing raises for a network failure.
    """
    session, slot, failure = _connect(route, slot_wait)
    if session is None:
        return {t.envelope: failure for t in targets}
    assert slot is not None
    outcomes: dict[str, ProbeOutcome] = {}
    asked_random = False

    def outcome(stage: Stage, reply: Reply | None, *, timed_out: bool = False) -> ProbeOutcome:
        # What is known about catch-all when this address was decided (the first transaction finds out).
        return ProbeOutcome(stage, reply, session.mx_host, session.tls, catch_all, timed_out=timed_out)

    try:
        for i, target in enumerate(targets):
            if not slot_renew(slot):
                log.warning("probe slot for %s expired mid-session; closing early", session.mx_host)
                break
            if target.smtputf8 and not session.supports_smtputf8:
                outcomes[target.envelope] = outcome(
                    Stage.SMTPUTF8, Reply(553, "5.6.7", f"{session.mx_host} does not support SMTPUTF8 (RFC 6531)")
                )
                continue
            rcpts = [target.envelope]
            if catch_all is None and not asked_random:
                rcpts.append(random_address(domain))
                asked_random = True  # once per connection: a 4xx for it would only repeat
            try:
                mail, replies = session.probe(mail_from=verification_sender(), rcpts=rcpts, smtputf8=target.smtputf8)
            except SessionLost as lost:
                timed_out = _timed_out(lost)
                for rest in targets[i:]:
                    outcomes[rest.envelope] = outcome(Stage.LOST, lost.reply, timed_out=timed_out)
                break
            if not mail.success:
                # The refusal is of our sender, so it would be the same for every address on this connection.
                for rest in targets[i:]:
                    outcomes[rest.envelope] = outcome(Stage.MAIL, mail)
                break
            if len(replies) > 1:
                catch_all = _catch_all_from(replies[1])
            elif catch_all is None and replies[0].permanent and replies[0].enhanced.startswith("5.1."):
                catch_all = False  # a domain that refuses one mailbox is no catch-all
            outcomes[target.envelope] = outcome(Stage.RCPT, replies[0])
            if not session.is_open:  # the RSET failed: the server is gone
                break
    finally:
        session.close()
        slot_release(slot)
    lost = ProbeOutcome(Stage.LOST, Reply(421, "4.4.2", "connection closed before this address was probed"))
    return {t.envelope: outcomes.get(t.envelope, lost) for t in targets}


def _timed_out(exc: BaseException) -> bool:
    # smtplib turns a socket timeout into SMTPServerDisconnected; the timeout is further down the chain.
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _catch_all_from(reply: Reply) -> bool | None:
    if reply.success:
        return True
    if reply.permanent and not reply.enhanced.startswith("5.7."):
        return False
    # 4xx (greylisting, a rate limit) or a policy refusal (RFC 3463 §3.8): nothing learnt about the domain.
    return None


def _connect(route: Route, slot_wait: float) -> tuple[SmtpSession | None, Slot | None, ProbeOutcome]:
    """A session with the highest-priority reachable MX host, holding one of that host's slots."""
    slots: dict[str, Slot] = {}

    def take_slot(host: str) -> Reply | None:
        slot = slot_acquire(host, wait=slot_wait)
        if slot is None:
            # Waiting is the point of the limit; a lower-priority MX instead would only be a backup relay that
            # accepts every address and so says nothing about them.
            limit = settings.POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX
            return Reply(451, "4.4.5", f"all {limit} probe connections to {host} are in use")
        slots[host] = slot
        return None

    attempt = open_to_route(
        route.hosts,
        connect_timeout=settings.POSTWERK_VERIFY_CONNECT_TIMEOUT,
        command_timeout=settings.POSTWERK_VERIFY_COMMAND_TIMEOUT,
        before=take_slot,
        after_failure=lambda host: slot_release(slots.pop(host)),
    )
    outcome = ProbeOutcome(Stage.BUSY if attempt.stopped else Stage.CONNECT, attempt.reply, attempt.host)
    if attempt.session is None:
        return None, None, outcome
    assert attempt.host is not None
    return attempt.session, slots[attempt.host], outcome
