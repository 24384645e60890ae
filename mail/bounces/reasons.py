"""The bounce vocabulary and the one function that classifies an SMTP reply.

`classify_reply(code, enhanced_status, text)` serves both paths that learn of a failure:
- synchronous replies during our own delivery (`550 5.1.1 <x>: Recipient address rejected: User unknown`), and
- asynchronous DSNs, where RFC 3464's Status and Diagnostic-Code fields carry the same three things.

How a reply is read, in order:
1. a STRONG text rule (`text_rules.STRONG`: precise wording such as "user unknown" or "DMARC policy") wins, because
   enhanced codes are often generic (5.0.0, 5.5.0) or misused by big providers;
2. else a specific enhanced status code (RFC 3463 and the IANA "SMTP Enhanced Status Codes" registry, e.g. 5.1.1
   bad destination mailbox, 5.2.2 mailbox full, 4.4.7 delivery time expired);
3. else a WEAK text rule ("mailbox unavailable", "access denied");
4. else the generic class.subject of the status code (X.1.x address, X.2.x mailbox, X.3.x system, X.4.x network,
   X.5.x protocol, X.6.x content, X.7.x security; RFC 3463 §3), then the basic reply code (RFC 5321 §4.2).

Kind: `hard` only for the reasons that say the address itself will never take mail (user unknown, no such
domain, moved) *and* only on a permanent failure; a transient reply (4xx, or a 4.x.x status) is always `soft`,
because the next attempt may well succeed. Everything else, including permanent rejections of our sender or
content, is `soft`: that address may take a different message.

`sender_rejected` is a rejection of the envelope sender (our return path), not of the recipient: X.1.7 / X.1.8,
Postfix's "Sender address rejected", Sendmail's "Domain of sender address ... does not exist", or any reply to
MAIL FROM that would otherwise read as an address problem (`at_mail_from`: no recipient has been named yet, RFC
5321 §3.3). Its callers fail the delivery without suppressing the recipient or counting a bounce against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from mail.bounces import text_rules


class Reason(StrEnum):
    USER_UNKNOWN = "user_unknown"
    DOMAIN_NOT_FOUND = "domain_not_found"  # no such domain, no mail server, null MX (RFC 7505)
    HAS_MOVED = "has_moved"
    MAILBOX_FULL = "mailbox_full"
    MAILBOX_DISABLED = "mailbox_disabled"
    SENDER_REJECTED = "sender_rejected"  # our envelope sender refused (X.1.7, X.1.8): not the recipient's fault
    POLICY_REJECTED = "policy_rejected"  # IP, PTR, relay or blocklist policy
    SPAM_BLOCKED = "spam_blocked"  # content judged spam or virus
    AUTH_FAILURE = "auth_failure"  # SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489)
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    EXPIRED = "expired"
    NETWORK_ERROR = "network_error"
    SYSTEM_ERROR = "system_error"
    OTHER = "other"


class Kind(StrEnum):
    HARD = "hard"  # the address will never take mail: suppress it
    SOFT = "soft"  # anything else: this message failed, the address may still work


HARD_REASONS = frozenset({Reason.USER_UNKNOWN, Reason.DOMAIN_NOT_FOUND, Reason.HAS_MOVED})

# What a reply to MAIL FROM cannot mean: no recipient is named yet, so an "unknown address", "no such domain" or a
# bare 550 there is about our sender. Reasons about the message or the connection (size, rate, content) stand.
ADDRESS_REASONS = frozenset(
    {*HARD_REASONS, Reason.MAILBOX_FULL, Reason.MAILBOX_DISABLED, Reason.POLICY_REJECTED, Reason.OTHER}
)


@dataclass(frozen=True)
class Classification:
    reason: Reason
    kind: Kind
    # Which rule decided, so a wrong classification can be traced: "text:user_unknown", "status:5.1.1",
    # "generic:5.7", "code:552", "mail-from(...)" (a reply to MAIL FROM), "none". Not part of equality: two
    # classifications agree when reason and kind do.
    matched_by: str = field(default="", compare=False)


def kind_for(reason: Reason, *, transient: bool = False) -> Kind:
    """`hard` for a hard reason on a permanent failure, `soft` for everything else."""
    return Kind.HARD if reason in HARD_REASONS and not transient else Kind.SOFT


_R = Reason

# Specific enhanced status codes, "subject.detail" (the class digit is handled separately): RFC 3463 §3 and the
# IANA registry (RFC 5248 and the RFCs it lists: 3886, 4468, 4865, 4954, 5321, 6710, 7293, 7372, 7504, 7505,
# 8098, 8617, 8689). These win over a weak text rule.
SPECIFIC_STATUS: dict[str, Reason] = {
    "1.1": _R.USER_UNKNOWN,  # bad destination mailbox address
    "1.2": _R.DOMAIN_NOT_FOUND,  # bad destination system address
    "1.3": _R.USER_UNKNOWN,  # bad destination mailbox address syntax
    "1.6": _R.HAS_MOVED,  # destination mailbox has moved, no forwarding address
    "1.7": _R.SENDER_REJECTED,  # bad sender's mailbox address syntax
    "1.8": _R.SENDER_REJECTED,  # bad sender's system address
    "1.10": _R.DOMAIN_NOT_FOUND,  # recipient address has null MX (RFC 7505)
    "2.1": _R.MAILBOX_DISABLED,  # mailbox disabled, not accepting messages
    "2.2": _R.MAILBOX_FULL,  # mailbox full
    "2.3": _R.MESSAGE_TOO_LARGE,  # message length exceeds administrative limit
    "2.4": _R.SYSTEM_ERROR,  # mailing list expansion problem
    "3.1": _R.SYSTEM_ERROR,  # mail system full
    "3.2": _R.SYSTEM_ERROR,  # system not accepting network messages
    "3.4": _R.MESSAGE_TOO_LARGE,  # message too big for system
    "3.5": _R.SYSTEM_ERROR,  # system incorrectly configured
    "4.1": _R.NETWORK_ERROR,  # no answer from host
    "4.2": _R.NETWORK_ERROR,  # bad connection
    "4.3": _R.NETWORK_ERROR,  # directory server failure (DNS)
    "4.5": _R.SYSTEM_ERROR,  # mail system congestion
    "4.6": _R.NETWORK_ERROR,  # routing loop detected
    "4.7": _R.EXPIRED,  # delivery time expired
    "5.3": _R.RATE_LIMITED,  # too many recipients
    "7.2": _R.POLICY_REJECTED,  # mailing list expansion prohibited
    "7.5": _R.AUTH_FAILURE,  # cryptographic failure
    "7.7": _R.AUTH_FAILURE,  # message integrity failure
    "7.8": _R.AUTH_FAILURE,  # authentication credentials invalid
    "7.13": _R.MAILBOX_DISABLED,  # user account disabled (RFC 4954)
    "7.16": _R.MESSAGE_TOO_LARGE,  # message too big for specified priority (RFC 6710)
    "7.17": _R.USER_UNKNOWN,  # mailbox owner has changed (RFC 7293)
    "7.18": _R.USER_UNKNOWN,  # domain owner has changed (RFC 7293)
    "7.20": _R.AUTH_FAILURE,  # no passing DKIM signature found (RFC 7372)
    "7.21": _R.AUTH_FAILURE,  # no acceptable DKIM signature found
    "7.22": _R.AUTH_FAILURE,  # no valid author-matched DKIM signature found
    "7.23": _R.AUTH_FAILURE,  # SPF validation failed
    "7.24": _R.AUTH_FAILURE,  # SPF validation error
    "7.25": _R.POLICY_REJECTED,  # reverse DNS validation failed
    "7.26": _R.AUTH_FAILURE,  # multiple authentication checks failed (Gmail: DMARC)
    "7.27": _R.SENDER_REJECTED,  # sender address has null MX (RFC 7505)
    "7.28": _R.RATE_LIMITED,  # mail flood detected (RFC 8098... registered for Gmail's limits)
    "7.29": _R.AUTH_FAILURE,  # ARC validation failure (RFC 8617)
    "7.30": _R.POLICY_REJECTED,  # REQUIRETLS support required (RFC 8689)
}

# Permanent 5.4.4 "unable to route" is what Postfix and others report for a domain with no address at all.
SPECIFIC_PERMANENT: dict[str, Reason] = {"4.4": _R.DOMAIN_NOT_FOUND}

# Generic subjects (RFC 3463 §3.1-3.8): used only when nothing more specific matched.
GENERIC_SUBJECT: dict[str, Reason] = {
    "0": _R.OTHER,
    "1": _R.OTHER,  # addressing status, unspecified
    "2": _R.OTHER,  # mailbox status, unspecified
    "3": _R.SYSTEM_ERROR,
    "4": _R.NETWORK_ERROR,
    "5": _R.OTHER,  # protocol
    "6": _R.OTHER,  # content/media
    "7": _R.POLICY_REJECTED,  # security or policy
}

_SENDER_STATUS = re.compile(r"^[45]\.(?:1\.[78]|7\.27)$")
STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
CODE_RE = re.compile(r"^\s*#?\s*([245]\d\d)(?:[\s\-]|$)")


def extract_status(text: str) -> str:
    """The first enhanced status code (RFC 3463 "class.subject.detail") in text, or ""."""
    match = STATUS_RE.search(text[: text_rules.MAX_TEXT])
    return ".".join(match.groups()) if match else ""


def extract_code(text: str) -> int:
    """The basic reply code (RFC 5321 §4.2) a diagnostic starts with, or 0."""
    match = CODE_RE.match(text[:64])
    return int(match.group(1)) if match else 0


def normalise_status(status: str) -> str:
    """`5.1.1` from `5.1.1`, `#5.1.1`, ` 5.1.1 (comment)`; "" when there is none."""
    match = STATUS_RE.search(status or "")
    return ".".join(match.groups()) if match else ""


def _status_reason(status: str) -> tuple[Reason | None, Reason | None]:
    """(specific reason, generic reason) for an enhanced status code."""
    if not status:
        return None, None
    klass, subject, detail = status.split(".")
    key = f"{int(subject)}.{int(detail)}"
    specific = SPECIFIC_STATUS.get(key)
    if klass == "5" and key in SPECIFIC_PERMANENT:
        specific = SPECIFIC_PERMANENT[key]
    if klass == "4" and subject == "7" and specific is None:
        # Transient security/policy codes (4.7.0, 4.7.1, 4.7.500...) are how providers throttle: Gmail 421 4.7.0,
        # Yahoo 421 4.7.0 [TSS04], Microsoft 451 4.7.500. Only a strong text rule (greylisting, SPF) overrides.
        return Reason.RATE_LIMITED, Reason.RATE_LIMITED
    return specific, GENERIC_SUBJECT.get(str(int(subject)), Reason.OTHER)


def _code_reason(code: int) -> Reason:
    if code in (421, 451, 452):  # service not available, local error, insufficient storage (RFC 5321 §4.2.3)
        return Reason.SYSTEM_ERROR
    if code == 552:  # "exceeded storage allocation": mostly a full mailbox
        return Reason.MAILBOX_FULL
    if code == 551:  # user not local; please try <forward-path> (RFC 5321 §3.4)
        return Reason.HAS_MOVED
    return Reason.OTHER


def classify_reply(code: int, enhanced_status: str, text: str, *, at_mail_from: bool = False) -> Classification:
    """Classify one SMTP reply (or one DSN recipient's Status + Diagnostic-Code).

    code: the basic reply code (550), or 0 if unknown; enhanced_status: "5.1.1" or "" (taken from the text when
    empty); text: the reply text, with or without the code in front; at_mail_from: the reply was to MAIL FROM.
    Never raises.
    """
    try:
        text = text or ""
        status = normalise_status(enhanced_status) or extract_status(text)
        code = code or extract_code(text)
        transient = status.startswith("4") if status else 400 <= code < 500
        normalised = text_rules.normalise(text)
        reason, rule = _reason(code, status, normalised)
    except Exception:  # a classifier must never take the delivery or bounce path down
        fallback = Reason.SENDER_REJECTED if at_mail_from else Reason.OTHER
        return Classification(fallback, Kind.SOFT, "error")
    if status and _SENDER_STATUS.match(status) and reason in ADDRESS_REASONS and rule != "text:tls":
        # X.1.7 / X.1.8 / X.7.27 say the sender's address is at fault: the text's "domain not found" is about it.
        reason, rule = Reason.SENDER_REJECTED, f"status:{status}({rule})"
    if at_mail_from and reason in ADDRESS_REASONS and rule != "text:tls":
        # No recipient is named at MAIL FROM: an address, policy or unexplained refusal there is about our sender.
        reason, rule = Reason.SENDER_REJECTED, f"mail-from({rule})"
    return Classification(reason, kind_for(reason, transient=transient), rule)


def _reason(code: int, status: str, normalised: str) -> tuple[Reason, str]:
    strong = text_rules.first_match(text_rules.STRONG, normalised)
    if strong:
        return Reason(strong), f"text:{text_rules.rule_name(strong, normalised)}"
    specific, generic = _status_reason(status)
    if specific:
        return specific, f"status:{status}"
    weak = text_rules.first_match(text_rules.WEAK, normalised)
    if weak:
        return Reason(weak), f"weak-text:{weak}"
    if generic:
        return generic, f"generic:{status.rsplit('.', 1)[0]}"
    if code:
        return _code_reason(code), f"code:{code}"
    return Reason.OTHER, "none"
