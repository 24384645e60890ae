"""`parse_report(raw) -> Report`: what a message that arrived at the bounce address means.

Pure: bytes in, dataclasses out, no database and no Django. It never raises: malformed MIME, random bytes, an
empty message or a 20 MB bounce all give a Report (type "unknown" at worst).

Order of recognition:
1. ARF feedback report (RFC 5965; any message/feedback-report part) -> type "complaint";
2. DSN (RFC 3464; any message/delivery-status or RFC 6533 message/global-delivery-status part) -> "bounce";
3. provider and MTA formats that are not DSNs (`nonstandard`: Exim, qmail, Sendmail, Exchange, Google, Yahoo,
   Postfix < 2.3, Lotus Notes...) -> "bounce", when the message looks like a bounce or a rule recognises it;
4. auto-replies (`autoreply`: RFC 3834 Auto-Submitted, X-Autoreply, Precedence, subjects) -> "autoreply";
5. anything else -> "unknown" (a bounce-looking message in which no recipient was found is a "bounce" with no
   recipients, so a caller can count it without acting on it).

Library choice. A `sisimai` Python distribution is not available from the package index this project installs
from, so it could not be evaluated. `flufl.bounce` 6.0.0 (GNU Mailman's detectors, pure Python, no network) was:
it recognises many historical provider formats, but returns addresses only, as a (temporary, permanent) pair of
sets - no status, diagnostic, action, remote MTA, complaints or auto-replies - and it drops the DSN fields we
need. So the standard formats (DSN, ARF, auto-replies) and every classification are our own stdlib `email` code
and rules, and flufl.bounce is the last resort that names the failed addresses of a bounce none of our rules
recognised (MDaemon, hMailServer, Sendmail "expanded from" pipes in the corpus); the reason then comes from the
text around each address. Without the library installed that fallback is skipped, nothing else changes.

Results, in short:
- every recipient has address (lower-cased), reason (`reasons.Reason`), kind ("hard"/"soft"), status ("5.1.1" or
  ""), diagnostic, action and remote_mta;
- a DSN recipient with Action: delayed (a warning, RFC 3464 §2.3.3) is kept with action "delayed", kind "soft":
  it is not a failure. `Report.failures` lists only the recipients with action "failed"; delivered, relayed and
  expanded recipients of a DSN are kept with their action too;
- Action: failed with a 4.x.x Status means the reporting MTA gave up retrying: reason "expired", unless the last
  reply said more about the address (no such user or domain, moved, mailbox full or disabled); the diagnostic
  keeps the last reply. The same holds for plain-text notices that say the message was given up on;
- a complaint's recipients have reason "other", kind "soft", action "complained" and the ARF Feedback-Type in
  `Report.feedback_type` (and in each recipient's diagnostic);
- an auto-reply's only recipient is the address that replied (its From), reason "other", kind "soft", action
  "auto-replied".
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from email.message import Message

from mail.bounces import arf, autoreply, dsn, nonstandard, providers
from mail.bounces import message as mime
from mail.bounces.reasons import (
    HARD_REASONS,
    Classification,
    Kind,
    Reason,
    classify_reply,
    extract_code,
    extract_status,
    kind_for,
    normalise_status,
)

log = logging.getLogger(__name__)

# When an MTA gives up after retrying, these reasons say more about the address than "expired" would.
KEPT_ON_EXPIRY = HARD_REASONS | {Reason.MAILBOX_FULL, Reason.MAILBOX_DISABLED, Reason.SENDER_REJECTED}

BOUNCE = "bounce"
COMPLAINT = "complaint"
AUTOREPLY = "autoreply"
UNKNOWN = "unknown"


@dataclass
class ReportRecipient:
    address: str
    kind: str  # reasons.Kind value: "hard" | "soft"
    reason: str  # reasons.Reason value
    status: str = ""  # enhanced status code, "5.1.1", or ""
    diagnostic: str = ""  # the remote reply or the notice's reason text
    action: str = "failed"  # failed | delayed | delivered | relayed | expanded | complained | auto-replied
    remote_mta: str = ""
    # Which rules decided, "<where the recipient was found>/<what classified it>": "dsn/status:5.1.1",
    # "exim/text:user_unknown", "ses-json/ses:Permanent/General", "arf/feedback-type"...
    matched_by: str = ""


@dataclass
class Report:
    type: str  # "bounce" | "complaint" | "autoreply" | "unknown"
    recipients: list[ReportRecipient] = field(default_factory=list)
    original_message_id: str = ""  # Message-ID of the message this report is about, with <>; "" if unknown
    original_sender: str = ""  # its envelope sender (our return path); "" if unknown or null
    original_envelope_id: str = ""  # RFC 3461 ENVID as returned in Original-Envelope-Id
    feedback_type: str = ""  # ARF Feedback-Type for complaints
    subject: str = ""  # the report's own Subject
    postwerk_headers: dict[str, str] = field(default_factory=dict)  # X-Postwerk-* headers of the original
    # A bounce that names no recipient: the notice as a whole, classified, with address "" (the caller finds the
    # delivery through the VERP return path, or keeps the report as unmatched). None when recipients were named.
    unnamed: ReportRecipient | None = None

    @property
    def failures(self) -> list[ReportRecipient]:
        """The recipients that failed for good: not delayed, delivered, relayed, complained or auto-replied."""
        return [r for r in self.recipients if r.action == "failed"] if self.type == BOUNCE else []

    def to_dict(self) -> dict:
        return asdict(self)


def parse_report(raw: bytes) -> Report:
    """Classify the raw bytes of a message received at the bounce address. Never raises."""
    try:
        msg = mime.load(raw)
    except Exception:
        log.warning("unparseable report", exc_info=True)
        return Report(type=UNKNOWN)
    try:
        return _parse(msg)
    except Exception:  # never take the intake down over one odd message
        log.warning("could not classify report", exc_info=True)
        return Report(type=UNKNOWN, subject=_safe_subject(msg))


def _safe_subject(msg: Message) -> str:
    try:
        return mime.header(msg, "subject")
    except Exception:
        return ""


def _parse(msg: Message) -> Report:
    subject = mime.header(msg, "subject")
    if arf.is_feedback_report(msg):
        return _complaint(msg, subject)
    notice = mime.notice_text(msg)
    provider = providers.recognise(msg, notice, subject)
    if provider is not None:
        return _finish(_from_provider(provider, subject), msg)
    dsn_parts = dsn.find_parts(msg)
    if dsn_parts:
        return _finish(_dsn_bounce(msg, dsn_parts, subject), msg)
    bounce_like = nonstandard.looks_like_bounce(msg)
    auto = autoreply.signal(msg)
    if auto and not bounce_like:
        return _autoreply(msg, subject)
    found = nonstandard.find(msg, notice, bounce_like=bounce_like)
    if found or bounce_like:
        report = Report(type=BOUNCE, subject=subject)
        notice_only = nonstandard.split_notice(notice)
        expiry = _expired_notice(notice_only)
        original = mime.attached_original(msg) or mime.inline_original(notice)
        senders = _senders(msg, original, {})
        refusal = _mail_from_refusal(notice_only)
        for item in found:
            if refusal:
                item.diagnostic, item.rule = refusal, f"{item.rule}+mail-from"
            one = notice_only if len(found) == 1 else ""
            report.recipients.append(_recipient(item, one, expiry, senders=senders, at_mail_from=bool(refusal)))
        _correlate(report, original, {})
        if not report.recipients:
            _from_original(report, original, notice_only, expiry)
        return _finish(report, msg)
    if auto:
        return _autoreply(msg, subject)
    return Report(type=UNKNOWN, subject=subject)


# --- DSN (RFC 3464) -----------------------------------------------------------------------------------------


def _dsn_bounce(msg: Message, parts: list[Message], subject: str) -> Report:
    delivery_status = dsn.parse(parts)
    report = Report(type=BOUNCE, subject=subject)
    notice = nonstandard.split_notice(mime.notice_text(msg))
    senders = _senders(msg, mime.attached_original(msg), delivery_status.per_message)
    for rcpt in delivery_status.recipients:
        context = nonstandard.context(notice, rcpt.address)
        diagnostic = rcpt.diagnostic or context
        status = _effective_status(rcpt.status, diagnostic)
        action = rcpt.action
        if action == "delayed" and status.endswith(".4.7"):
            # X.4.7 "delivery time expired" (RFC 3463): the MTA gave up, whatever Action says (OpenSMTPD 6.8
            # reports its expiry as "delayed").
            action = "failed"
        at_mail_from = bool(_MAIL_FROM_RE.search(f"{rcpt.diagnostic} {context}"))
        named = not at_mail_from and _names_sender(diagnostic, rcpt.address, senders)
        classification = _classify_dsn(action, status, diagnostic, at_mail_from=at_mail_from or named)
        if named:
            classification = _named_sender(classification)
        if classification.reason == Reason.OTHER and action == "failed" and len(delivery_status.recipients) == 1:
            classification = _from_notice(classification, notice, status)
        report.recipients.append(
            ReportRecipient(
                address=rcpt.address,
                kind=classification.kind.value,
                reason=classification.reason.value,
                status=status,
                diagnostic=diagnostic,
                action=action,
                remote_mta=rcpt.remote_mta or nonstandard.remote_mta(diagnostic),
                matched_by=f"dsn/{classification.matched_by}",
            )
        )
    if not report.recipients:
        # A multipart/report whose delivery-status names nobody: fall back to the notice text.
        expiry = _expired_notice(notice)
        for item in nonstandard.find(msg, notice, bounce_like=True):
            report.recipients.append(_recipient(item, notice, expiry))
    if not report.recipients:
        _from_original(report, mime.attached_original(msg), notice, _expired_notice(notice))
    _dedupe(report)
    per_message = delivery_status.per_message
    report.original_envelope_id = per_message.get("original-envelope-id", "").strip()
    _correlate(report, mime.attached_original(msg), per_message)
    return report


def _from_notice(classification: Classification, notice: str, status: str) -> Classification:
    """A lone failed recipient whose Status and Diagnostic-Code say nothing specific ("550 Rejected", 5.0.0): the
    human-readable part often does ("The email account that you tried to reach does not exist"). Only a STRONG
    text rule is taken from it, and not the MTA's own retry story (expiry, network)."""
    said = classify_reply(0, status, notice[:3000])
    if not said.matched_by.startswith("text:") or said.reason in (Reason.EXPIRED, Reason.NETWORK_ERROR):
        return classification
    kind = kind_for(said.reason, transient=status.startswith("4"))
    return Classification(said.reason, kind, f"notice({said.matched_by})")


def _effective_status(status: str, diagnostic: str) -> str:
    """The Status field, unless the Diagnostic-Code holds a specific one of the same class.

    The reply inside Diagnostic-Code ("smtp; 550 5.1.1 ...") is the remote server's own; the Status field is
    the reporting MTA's summary, which Exim and Postfix < 2.3 give as a bare 5.0.0 / 4.0.0 (RFC 3464 §2.3.4),
    and Sendmail as its own guess (5.1.1 for every 550 at RCPT, even "550 5.2.1 account disabled").
    """
    inner = extract_status(diagnostic)
    if inner and not inner.endswith(".0.0") and inner[0] == (status or inner)[0]:
        return inner
    if inner and not status:
        return inner
    return status


# The reply came to MAIL FROM (Exim "after MAIL FROM", Postfix "in reply to MAIL FROM command", dma "did not like
# our MAIL FROM", Sendmail's transcript): no recipient was named yet, so it is about our sender (RFC 5321 §3.3).
_MAIL_FROM_RE = re.compile(r"(?:after|in reply to|like our|>>>)\s+MAIL\s+FROM", re.IGNORECASE)
_TRANSIENT_REPLY = re.compile(r"^\s*4\d\d\b|(?<![\d.])4\.\d{1,3}\.\d{1,3}(?![\d.]*\d)")
# A connection that failed before any reply (Courier "Network is down", "Connection refused", a timeout): never a
# permanent failure by itself, so a failed recipient whose diagnostic holds only that is one the MTA gave up on.
_CONNECTION_FAILURE = re.compile(
    r"connection (?:refused|timed out|reset)|network is (?:down|unreachable)|no route to host|timed out",
    re.IGNORECASE,
)


def _classify_dsn(action: str, status: str, diagnostic: str, *, at_mail_from: bool = False) -> Classification:
    classification = classify_reply(extract_code(diagnostic), status, diagnostic, at_mail_from=at_mail_from)
    rule = classification.matched_by
    if action in ("delivered", "relayed", "expanded"):
        return Classification(Reason.OTHER, Kind.SOFT, f"action:{action}")
    if action == "delayed":
        return Classification(classification.reason, Kind.SOFT, f"delayed({rule})")
    # A failure whose last reply was transient (a 4.x.x Status, or a Diagnostic-Code that starts 4xx under
    # Exim's 5.0.0): the MTA gave up after retrying until its queue lifetime ran out.
    gave_up = action == "failed" and (
        status.startswith("4")
        or bool(_TRANSIENT_REPLY.search(diagnostic[:80]))
        or (classification.reason == Reason.NETWORK_ERROR and _no_reply(diagnostic))
    )
    if gave_up and classification.reason not in KEPT_ON_EXPIRY:
        return Classification(Reason.EXPIRED, Kind.SOFT, f"expired({rule})")
    if gave_up:
        return Classification(classification.reason, kind_for(classification.reason), f"expired-kept({rule})")
    return classification


def _no_reply(diagnostic: str) -> bool:
    """The diagnostic is a connection failure with no SMTP reply code in it."""
    return bool(_CONNECTION_FAILURE.search(diagnostic[:500])) and not re.search(r"(?<![\d.])[245]\d\d\b", diagnostic)


def _dedupe(report: Report) -> None:
    seen: dict[str, ReportRecipient] = {}
    for rcpt in report.recipients:
        seen.setdefault(rcpt.address, rcpt)
    report.recipients = list(seen.values())


# --- Non-DSN bounces ----------------------------------------------------------------------------------------

_EXPIRED_NOTICE = re.compile(
    r"(?:could not|cannot|couldn't) (?:be delivered|send message) for (?:more than )?\d+ (?:day|hour)"
    r"|in the queue too long|retry timeout exceeded|delivery (?:time )?expired|message (?:has )?expired"
    r"|i'?m not going to try again",
    re.IGNORECASE,
)


def _expired_notice(notice: str) -> bool:
    return bool(_EXPIRED_NOTICE.search(notice[:8000]))


def _recipient(
    item: nonstandard.Found,
    whole_notice: str,
    expiry: bool,
    *,
    senders: frozenset[str] = frozenset(),
    at_mail_from: bool = False,
) -> ReportRecipient:
    diagnostic = item.diagnostic
    at_mail_from = at_mail_from or bool(_MAIL_FROM_RE.search(diagnostic))
    named = not at_mail_from and _names_sender(diagnostic, item.address, senders)
    code = extract_code(_reply_part(diagnostic))
    classification = classify_reply(code, "", diagnostic, at_mail_from=at_mail_from or named)
    if named:
        classification = _named_sender(classification)
    if classification.reason == Reason.OTHER and whole_notice and not _says_why(diagnostic):
        # A single recipient with no reason next to it: the notice as a whole says why.
        classification = classify_reply(0, "", whole_notice)
        classification = Classification(
            classification.reason, classification.kind, f"notice({classification.matched_by})"
        )
        if classification.reason in (Reason.EXPIRED, Reason.NETWORK_ERROR) and not expiry:
            classification = Classification(Reason.OTHER, Kind.SOFT, "notice:none")
    status = extract_status(diagnostic)
    permanent = bool(re.search(r"(?<![\d.])5\d\d[ -]", diagnostic)) or status.startswith("5")
    if item.action == "failed" and expiry and not permanent and classification.reason not in KEPT_ON_EXPIRY:
        classification = Classification(Reason.EXPIRED, Kind.SOFT, f"expired({classification.matched_by})")
    if item.action == "delayed":
        classification = Classification(classification.reason, Kind.SOFT, classification.matched_by)
    elif status.startswith("4") and classification.reason in HARD_REASONS:
        # The notice reports a failure: the MTA gave up on a transient "no such" reply.
        classification = Classification(
            classification.reason, kind_for(classification.reason), classification.matched_by
        )
    return ReportRecipient(
        address=item.address,
        kind=classification.kind.value,
        reason=classification.reason.value,
        status=status,
        diagnostic=diagnostic,
        action=item.action,
        remote_mta=item.remote_mta,
        matched_by=f"{item.rule or 'text'}/{classification.matched_by}",
    )


def _senders(msg: Message, original: Message | None, per_message: dict[str, str]) -> frozenset[str]:
    """The original's envelope sender, as far as the report tells it: where the report was sent (its To, which
    is our VERP return path), Postfix's X-Postfix-Sender and the returned original's Return-Path."""
    candidates = (
        mime.header(msg, "to"),
        per_message.get("x-postfix-sender", ""),
        per_message.get("original-mail-from", ""),
        mime.header(original, "return-path"),
    )
    return frozenset(a for a in (mime.clean_address(c.partition(";")[2] or c) for c in candidates) if a)


def _names_sender(diagnostic: str, recipient: str, senders: frozenset[str]) -> bool:
    """The reply names our envelope sender and not the recipient: whatever it refuses, it refuses the sender
    (a server that verifies the return path, or checks its domain, at RCPT or after DATA)."""
    lowered = diagnostic[:2000].lower()
    return bool(recipient) and recipient.lower() not in lowered and any(s in lowered for s in senders)


def _named_sender(classification: Classification) -> Classification:
    rule = classification.matched_by
    if rule.startswith("mail-from("):
        rule = "names-sender(" + rule.removeprefix("mail-from(")
    return Classification(classification.reason, classification.kind, rule)


# Sendmail V5's transcript of a session refused at MAIL FROM (">>> MAIL From:<...>", "<<< 553 ..."), with no
# RCPT TO sent at all: every recipient failed because of our sender, whatever Sendmail's own verdict line says.
_MAIL_FROM_COMMAND = re.compile(r"^\s*>>>\s*MAIL\s+FROM:?[^\n]*\n\s*<<<\s*([45]\d\d\b[^\n]*)", re.I | re.M)
_RCPT_COMMAND = re.compile(r"^\s*>>>\s*RCPT\b", re.I | re.M)


def _mail_from_refusal(notice: str) -> str:
    text = notice[:20000]
    match = _MAIL_FROM_COMMAND.search(text)
    return match.group(1).strip() if match and not _RCPT_COMMAND.search(text) else ""


def _reply_part(diagnostic: str) -> str:
    """The diagnostic from its first SMTP reply code on ("host x said: 550 ..." -> "550 ...")."""
    match = re.search(r"(?<![\d.])[245]\d\d(?=[ -])", diagnostic[:2000])
    return diagnostic[match.start() :] if match else diagnostic


def _from_original(report: Report, original: Message | None, notice: str, expiry: bool) -> None:
    """A bounce whose notice names no recipient: the returned original's To/Cc, when it names exactly one address
    (with one VERP return path per delivery, that is whose delivery failed), or those of its addresses that the
    notice mentions; else the notice is kept unnamed."""
    addresses: list[str] = []
    for name in ("to", "cc"):
        for value in re.split(r",(?![^<]*>)", mime.header(original, name)):
            address = mime.clean_address(value)
            if address and address not in addresses:
                addresses.append(address)
    item = nonstandard.Found("", notice[:2000].strip(), rule="original-to")
    if len(addresses) == 1:
        item.address = addresses[0]
        report.recipients.append(_recipient(item, notice, expiry))
        return
    # Several: the ones the notice itself mentions are the ones it is about, each with the lines around it.
    lowered = notice[:20000].lower()
    mentioned = [address for address in addresses[:50] if address in lowered]
    for address in mentioned:
        found = nonstandard.Found(address, nonstandard.context(notice, address), rule="original-to-mentioned")
        report.recipients.append(_recipient(found, notice if len(mentioned) == 1 else "", expiry))
    if not mentioned:
        report.unnamed = _unnamed(item, notice, expiry)


def _finish(report: Report, msg: Message) -> Report:
    """Give a bounce that names nobody its unnamed classification (what the notice says as a whole)."""
    if report.type == BOUNCE and not report.recipients and report.unnamed is None:
        notice = nonstandard.split_notice(mime.notice_text(msg))
        item = nonstandard.Found("", " ".join(notice.split())[:2000], rule="unnamed")
        report.unnamed = _unnamed(item, notice, _expired_notice(notice))
    return report


def _unnamed(item: nonstandard.Found, notice: str, expiry: bool) -> ReportRecipient:
    if nonstandard.WARNING_RE.search(notice[:4000]) and nonstandard.rule_is_generic(item):
        item.action = "delayed"  # a warning that names nobody: nothing failed yet
    unnamed = _recipient(item, notice, expiry)
    unnamed.matched_by = "unnamed/" + unnamed.matched_by.partition("/")[2]
    return unnamed


def _says_why(diagnostic: str) -> bool:
    return bool(extract_status(diagnostic) or extract_code(diagnostic))


# --- Providers' own formats (Amazon SES notifications, Microsoft JMRP, Apple unsubscribe) ----------------------


def _from_provider(found: providers.ProviderReport, subject: str) -> Report:
    report = Report(type=found.type, subject=subject, feedback_type=found.feedback_type)
    report.original_message_id = found.original_message_id
    report.original_sender = found.original_sender
    for entry in found.recipients:
        if found.type == COMPLAINT:
            report.recipients.append(
                ReportRecipient(
                    address=entry.address,
                    kind=Kind.SOFT.value,
                    reason=Reason.OTHER.value,
                    diagnostic=f"feedback-type={found.feedback_type}",
                    action="complained",
                    matched_by=f"{found.source}/complaint",
                )
            )
            continue
        classification = classify_reply(extract_code(entry.diagnostic), entry.status, entry.diagnostic)
        if (
            entry.fallback is not None
            and classification.matched_by in ("none", "")
            or (entry.fallback is not None and classification.reason == Reason.OTHER)
        ):
            classification = entry.fallback
        if entry.transient:
            classification = Classification(classification.reason, Kind.SOFT, classification.matched_by)
        report.recipients.append(
            ReportRecipient(
                address=entry.address,
                kind=classification.kind.value,
                reason=classification.reason.value,
                status=normalise_status(entry.status) or extract_status(entry.diagnostic),
                diagnostic=entry.diagnostic,
                action="failed",
                remote_mta=entry.remote_mta,
                matched_by=f"{found.source}/{classification.matched_by}",
            )
        )
    return report


# --- ARF complaints (RFC 5965) ------------------------------------------------------------------------------


def _complaint(msg: Message, subject: str) -> Report:
    feedback = arf.parse(arf.find_part(msg))
    original = mime.attached_original(msg)
    addresses = feedback.original_rcpt_to
    if not addresses and original is not None:
        addresses = [mime.clean_address(value) for value in re.split(r",(?![^<]*>)", mime.header(original, "to"))]
        addresses = [a for a in dict.fromkeys(addresses) if a]
    diagnostic = f"feedback-type={feedback.feedback_type}" + (
        f"; user-agent={feedback.user_agent}" if feedback.user_agent else ""
    )
    report = Report(type=COMPLAINT, subject=subject, feedback_type=feedback.feedback_type)
    for address in addresses:
        report.recipients.append(
            ReportRecipient(
                address=address,
                kind=Kind.SOFT.value,
                reason=Reason.OTHER.value,
                diagnostic=diagnostic,
                action="complained",
            )
        )
    for rcpt in report.recipients:
        rcpt.matched_by = "arf/feedback-type" if feedback.original_rcpt_to else "arf/original-to"
    report.original_envelope_id = feedback.original_envelope_id
    _correlate(report, original, {"original-mail-from": feedback.original_mail_from})
    return report


# --- Auto-replies (RFC 3834) --------------------------------------------------------------------------------


def _autoreply(msg: Message, subject: str) -> Report:
    report = Report(type=AUTOREPLY, subject=subject)
    sender = mime.clean_address(mime.header(msg, "from"))
    if sender:
        report.recipients.append(
            ReportRecipient(
                address=sender,
                kind=Kind.SOFT.value,
                reason=Reason.OTHER.value,
                diagnostic=subject,
                action="auto-replied",
                matched_by=f"autoreply/{autoreply.signal(msg) or 'bounce-address'}",
            )
        )
    # RFC 3834 §3.1.5: the reply's In-Reply-To names the message it answers.
    report.original_message_id = _message_id(mime.header(msg, "in-reply-to")) or _message_id(
        mime.header(msg, "references")
    )
    return report


# --- Correlation --------------------------------------------------------------------------------------------

_MSGID_RE = re.compile(r"<[^<>\s]{1,500}>")


def _message_id(value: str) -> str:
    match = _MSGID_RE.search(value or "")
    if match:
        return match.group(0)
    value = (value or "").strip()
    return value if "@" in value and " " not in value else ""  # a Message-ID written without <>


def _correlate(report: Report, original: Message | None, per_message: dict[str, str]) -> None:
    """Fill in what maps the report back to our message: Message-ID, envelope sender, envelope id."""
    report.original_message_id = (
        _message_id(mime.header(original, "message-id"))
        or _message_id(per_message.get("x-original-message-id", ""))
        or report.original_message_id
    )
    # The envelope sender: ARF Original-Mail-From, Postfix's X-Postfix-Sender, the original's Return-Path.
    for candidate in (
        per_message.get("original-mail-from", ""),
        per_message.get("x-postfix-sender", ""),
        mime.header(original, "return-path"),
        mime.header(original, "x-postwerk-return-path"),
    ):
        address = mime.clean_address(candidate)
        if address:
            report.original_sender = address
            break
    if original is not None:
        try:
            names = list(original.keys())[:200]
        except Exception:
            names = []
        for name in names:
            if name.lower().startswith("x-postwerk-"):
                report.postwerk_headers.setdefault(name, mime.header(original, name))
        if not report.original_envelope_id:
            report.original_envelope_id = mime.header(original, "x-postwerk-envelope-id")
