"""The per-address verdict: what the name says, what DNS says, what the MX said, folded into one result.

Pure: `address_facts` parses, `verdict` decides, `result_json` shapes the answer. The network steps (DNS in
`mail.dns`, the SMTP probe in `verification.probe`) hand their findings in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from mail.addresses import AddressError, parse_mailbox
from mail.bounces.reasons import HARD_REASONS, classify_reply
from mail.bounces.reasons import Reason as BounceReason
from mail.dns import Route, RouteStatus
from mail.smtp_client import Reply
from verification.lists import is_disposable, is_free_provider, is_role_account, suggest_domain
from verification.models import Result

_GREYLISTING = re.compile(r"gr[ae]y-?list", re.IGNORECASE)


class Why(StrEnum):
    """The reasons a result is what it is (`reasons` in the API)."""

    ACCEPTED = "accepted"
    INVALID_SYNTAX = "invalid_syntax"
    NO_DOMAIN = "no_domain"  # NXDOMAIN, or neither MX nor address records
    NULL_MX = "null_mx"  # RFC 7505: the domain says it takes no mail
    DNS_ERROR = "dns_error"
    DISPOSABLE = "disposable"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    MAILBOX_DISABLED = "mailbox_disabled"
    MAILBOX_FULL = "mailbox_full"
    CATCH_ALL = "catch_all"  # the domain also accepted an address that cannot exist
    SUPPRESSED = "suppressed"  # on the organization's suppression list: Postwerk will not send to it
    GREYLISTED = "greylisted"
    TEMPORARY_FAILURE = "temporary_failure"
    TIMEOUT = "timeout"
    CONNECTION_LOST = "connection_lost"
    MX_UNREACHABLE = "mx_unreachable"
    MX_BUSY = "mx_busy"  # every probe connection this MX host may have is in use
    SENDER_REJECTED = "sender_rejected"  # the MX refused our verification sender: it told us nothing
    POLICY_BLOCKED = "policy_blocked"  # 5.7.x: refused for who we are, not for the address
    SMTPUTF8_UNSUPPORTED = "smtputf8_unsupported"
    REJECTED = "rejected"  # some other permanent refusal that does not name the mailbox
    INTERNAL_ERROR = "internal_error"  # ours, logged; the address was not checked


class Stage(StrEnum):
    """Where the probe of one address ended."""

    RCPT = "rcpt"  # the MX answered RCPT TO for this address
    MAIL = "mail"  # the MX answered MAIL FROM with a failure
    CONNECT = "connect"  # no MX host could be reached
    BUSY = "busy"  # no connection slot came free in time
    LOST = "lost"  # the connection broke or a reply did not come in time
    SMTPUTF8 = "smtputf8"  # the MX cannot take an internationalised mailbox
    ERROR = "error"  # a bug on our side


@dataclass(frozen=True)
class AddressFacts:
    address: str  # as given
    normalized: str = ""  # email-validator's normalised form; "" when the syntax is invalid
    envelope: str = ""  # what RCPT TO names: local part as given, ASCII (IDNA) domain
    domain: str = ""  # ASCII lower case
    smtputf8: bool = False  # the local part needs SMTPUTF8 (RFC 6531)
    syntax_error: str = ""
    role_account: bool = False
    disposable: bool = False
    free_provider: bool = False
    did_you_mean: str | None = None

    @property
    def valid(self) -> bool:
        return not self.syntax_error


@dataclass(frozen=True)
class ProbeOutcome:
    stage: Stage
    reply: Reply | None = None
    mx_host: str = ""
    tls: bool | None = None
    catch_all: bool | None = None  # None: not known
    timed_out: bool = False
    cached: bool = False

    @property
    def definite(self) -> bool:
        """Worth remembering for POSTWERK_VERIFY_ADDRESS_CACHE_TTL: the MX accepted, or refused the mailbox."""
        if self.stage is not Stage.RCPT or self.reply is None:
            return False
        return self.reply.success or (self.reply.permanent and not self.reply.enhanced.startswith("5.7."))


def address_facts(address: str) -> AddressFacts:
    """Syntax (RFC 5321/5322 and RFC 6531 internationalised addresses, via email-validator) and name checks."""
    try:
        mailbox = parse_mailbox(address)
    except AddressError as exc:
        return AddressFacts(address=address, syntax_error=str(exc))
    suggestion = suggest_domain(mailbox.domain)
    return AddressFacts(
        address=address,
        normalized=mailbox.address,
        envelope=mailbox.envelope_address,
        domain=mailbox.domain,
        smtputf8=mailbox.smtputf8,
        role_account=is_role_account(mailbox.local_part),
        disposable=is_disposable(mailbox.domain),
        free_provider=is_free_provider(mailbox.domain),
        did_you_mean=f"{mailbox.local_part}@{suggestion}" if suggestion else None,
    )


def verdict(
    facts: AddressFacts, route: Route | None, outcome: ProbeOutcome | None, *, suppressed: bool
) -> tuple[Result, list[Why]]:
    result, reasons = _base_verdict(facts, route, outcome)
    if suppressed and result is not Result.UNDELIVERABLE:
        # It may well exist, but Postwerk will not send to it until the suppression is lifted.
        reasons.append(Why.SUPPRESSED)
        if result is Result.DELIVERABLE:
            result = Result.RISKY
    return result, reasons


def _base_verdict(facts: AddressFacts, route: Route | None, outcome: ProbeOutcome | None) -> tuple[Result, list[Why]]:
    if not facts.valid:
        return Result.UNDELIVERABLE, [Why.INVALID_SYNTAX]
    if route is None or route.status is RouteStatus.TEMPORARY:
        return Result.UNKNOWN, [Why.DNS_ERROR]
    if route.status is RouteStatus.NO_DOMAIN:
        return Result.UNDELIVERABLE, [Why.NO_DOMAIN]
    if route.status is RouteStatus.NULL_MX:
        return Result.UNDELIVERABLE, [Why.NULL_MX]
    if facts.disposable:
        # Throwaway inboxes accept anything for a few minutes: not worth a probe, not worth mailing.
        return Result.RISKY, [Why.DISPOSABLE]
    if outcome is None:
        return Result.UNKNOWN, [Why.MX_UNREACHABLE]
    return _smtp_verdict(outcome)


def _smtp_verdict(outcome: ProbeOutcome) -> tuple[Result, list[Why]]:
    reply = outcome.reply
    if outcome.stage is Stage.ERROR:
        return Result.UNKNOWN, [Why.INTERNAL_ERROR]
    if outcome.stage is Stage.BUSY:
        return Result.UNKNOWN, [Why.MX_BUSY]
    if outcome.stage is Stage.CONNECT or reply is None:
        return Result.UNKNOWN, [Why.MX_UNREACHABLE]
    if outcome.stage is Stage.LOST:
        return Result.UNKNOWN, [Why.TIMEOUT if outcome.timed_out else Why.CONNECTION_LOST]
    if outcome.stage is Stage.SMTPUTF8:
        return Result.UNKNOWN, [Why.SMTPUTF8_UNSUPPORTED]
    if not reply.success and not reply.permanent:
        # 4xx: greylisting (first contact deferred on purpose), rate limits, a busy server. Retry later.
        return Result.UNKNOWN, [Why.GREYLISTED if _GREYLISTING.search(reply.text) else Why.TEMPORARY_FAILURE]
    if outcome.stage is Stage.MAIL:
        # Our sender was refused (a policy, an SPF or callout failure): nothing was learnt about the address.
        return Result.UNKNOWN, [Why.SENDER_REJECTED]
    if reply.success:
        if outcome.catch_all:
            return Result.RISKY, [Why.CATCH_ALL]
        return Result.DELIVERABLE, [Why.ACCEPTED]
    return _rejection_verdict(reply)


def _rejection_verdict(reply: Reply) -> tuple[Result, list[Why]]:
    reason = classify_reply(reply.code, reply.enhanced, reply.text).reason
    if reason is BounceReason.SENDER_REJECTED:
        # Postfix answers its sender restrictions at RCPT ("553 5.1.8 ...: Sender address rejected"): about us.
        return Result.UNKNOWN, [Why.SENDER_REJECTED]
    # RFC 3463 §3.8: 5.7.x is a security or policy refusal, about us (IP reputation, blocklists), not the
    # mailbox; calling the address undeliverable would delete good addresses from the caller's list.
    if reply.enhanced.startswith("5.7."):
        return Result.UNKNOWN, [Why.POLICY_BLOCKED]
    # RFC 3463 §3.2 address status: 550 5.1.1 bad mailbox, 551 5.1.6 moved, 553 5.1.3 bad syntax, 5.1.2 domain.
    if reply.enhanced.startswith("5.1.") and reply.code in (550, 551, 553):
        return Result.UNDELIVERABLE, [Why.MAILBOX_NOT_FOUND]
    # Everything else (no enhanced status, other codes) is read the way a synchronous bounce would be.
    if reason in HARD_REASONS:
        return Result.UNDELIVERABLE, [Why.MAILBOX_NOT_FOUND]
    if reason is BounceReason.MAILBOX_DISABLED:
        return Result.UNDELIVERABLE, [Why.MAILBOX_DISABLED]
    if reason is BounceReason.MAILBOX_FULL:
        return Result.RISKY, [Why.MAILBOX_FULL]
    if reason in (BounceReason.POLICY_REJECTED, BounceReason.SPAM_BLOCKED, BounceReason.AUTH_FAILURE):
        return Result.UNKNOWN, [Why.POLICY_BLOCKED]
    return Result.UNKNOWN, [Why.REJECTED]


def result_json(
    facts: AddressFacts, route: Route | None, outcome: ProbeOutcome | None, *, suppressed: bool
) -> dict[str, object]:
    """One address's answer, as the API returns it and the job stores it."""
    result, reasons = verdict(facts, route, outcome, suppressed=suppressed)
    smtp = None
    if outcome is not None and outcome.reply is not None:
        smtp = {
            "code": outcome.reply.code,
            "enhanced": outcome.reply.enhanced,
            "text": outcome.reply.text[:500],
            "stage": str(outcome.stage),
            "mx_host": outcome.mx_host,
            "tls": outcome.tls,
            "cached": outcome.cached,
        }
    return {
        "address": facts.address,
        "normalized": facts.normalized or None,
        "result": str(result),
        "reasons": [str(r) for r in reasons],
        "checks": {
            "syntax": {"valid": facts.valid, "error": facts.syntax_error or None, "smtputf8": facts.smtputf8},
            "domain": _domain_json(facts, route),
            "mx": _mx_json(route),
            "disposable": facts.disposable,
            "role_account": facts.role_account,
            "free_provider": facts.free_provider,
            "suppressed": suppressed,
            "smtp": smtp,
            "catch_all": outcome.catch_all if outcome is not None else None,
            "did_you_mean": facts.did_you_mean,
        },
    }


def _domain_json(facts: AddressFacts, route: Route | None) -> dict[str, object] | None:
    if not facts.valid:
        return None
    if route is None or route.status is RouteStatus.TEMPORARY:
        exists = None
    else:
        # "Exists" as a mail domain: NXDOMAIN, or a name with neither MX nor address records, is false.
        exists = route.status is not RouteStatus.NO_DOMAIN
    return {"name": facts.domain, "exists": exists, "detail": route.detail if route is not None else ""}


def _mx_json(route: Route | None) -> dict[str, object] | None:
    if route is None or route.status in (RouteStatus.TEMPORARY, RouteStatus.NO_DOMAIN):
        return None
    if route.status is RouteStatus.NULL_MX:
        return {"kind": "null_mx", "hosts": []}
    # "implicit": no MX records, so the domain's own A/AAAA address is the mail host (RFC 5321 §5.1).
    return {"kind": "implicit" if route.implicit else "mx", "hosts": list(route.hosts)}
