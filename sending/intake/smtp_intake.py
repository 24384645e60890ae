"""Accepting a message submitted over SMTP: the same rows, queue, signing and delivery as the send API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from django.conf import settings
from django.utils import timezone

from accounts.models import SmtpCredential
from mail.addresses import AddressError, Mailbox, parse_mailbox
from mail.mime_limits import MAX_MIME_DEPTH, mime_too_deep
from mail.raw_message import (
    date_header,
    from_addresses,
    normalize_newlines,
    parse_headers,
    prepend_headers,
    raw_header,
    remove_headers,
)
from mail.trace_headers import SmtpTrace, received_header
from sending.errors import Refused
from sending.intake.accept import Caller, authorise, guard, prepare, screen_and_store
from sending.intake.composer import CONTROL_PREFIX
from sending.intake.submission import Prepared, prepared_rows
from sending.models import Domain, Message, uuid7
from sending.reputation.holds import smtp_sender_refusal
from sending.streams.options import NORMAL, PRIORITIES, SendOptions, options_apply

__all__ = ["Refused", "SmtpSubmission", "check_recipient", "check_sender", "smtp_message_prepare"]

# Bcc must never reach a recipient; Return-Path belongs to the final delivery (RFC 5321 §4.4). X-Postwerk-*
# headers are instructions to Postwerk (X-Postwerk-Stream: the message stream; X-Postwerk-Priority: high or
# normal), not part of the message: every one is removed, read or not, so none ever reaches a recipient (the send
# API refuses them in `headers`: it has fields for both).
STREAM_HEADER = "X-Postwerk-Stream"
PRIORITY_HEADER = "X-Postwerk-Priority"
STRIPPED_HEADERS = {"bcc", "return-path"}


def smtp_caller(credential: SmtpCredential) -> Caller:
    """The accept pipeline's caller for a credential, kept on the credential object, which lives as long as the
    SMTP session: a session sending many messages looks each domain up once, not at MAIL and again after DATA
    for every message."""
    caller: Caller | None = getattr(credential, "_postwerk_caller", None)
    if caller is None:
        caller = credential._postwerk_caller = Caller(credential.organization, smtp_credential=credential)  # type: ignore[attr-defined]
    return caller


def check_sender(credential: SmtpCredential, address: str) -> Mailbox:
    """MAIL FROM: a valid address at a domain this credential may use."""
    try:
        mailbox = parse_mailbox(address)
    except AddressError as exc:
        raise Refused.smtp("553 5.1.7 Bad sender address syntax") from exc
    caller = smtp_caller(credential)
    domain = authorise(caller, mailbox.domain, what="Sender")
    if settings.POSTWERK_REQUIRE_VERIFIED_DOMAINS and domain.verified_at is None:
        guard(caller, domain, mailbox.domain)
    # Organizations that reject while paused or over their limit hear it here when that is already known.
    refusal = smtp_sender_refusal(credential, domain)
    if refusal is not None:
        raise Refused.smtp(refusal)
    return mailbox


def check_recipient(address: str) -> Mailbox:
    try:
        return parse_mailbox(address)
    except AddressError as exc:
        raise Refused.smtp("553 5.1.3 Bad recipient address syntax") from exc


def smtp_message_submit(
    *, credential: SmtpCredential, mail_from: str, rcpt_tos: list[str], raw: bytes, smtputf8: bool = False
) -> Message:
    """Store a submitted message and its recipients in one transaction. Raises Refused."""
    prepared = smtp_message_prepare(
        credential=credential, mail_from=mail_from, rcpt_tos=rcpt_tos, raw=raw, smtputf8=smtputf8
    )
    refused = smtp_messages_store([prepared])
    if refused:
        raise refused[0]
    return prepared.message


def smtp_messages_store(prepared: Sequence[Prepared]) -> dict[int, Refused]:
    """Screen and store prepared messages, of any organizations, in one transaction: the SMTP server's group
    commit. The refusals, by index, of messages a paused scope or a full send limit turned away."""
    return screen_and_store(prepared)


def smtp_message_prepare(
    *,
    credential: SmtpCredential,
    mail_from: str,
    rcpt_tos: list[str],
    raw: bytes,
    smtputf8: bool = False,
    trace: SmtpTrace | None = None,
) -> Prepared:
    """Check a submitted message and build its rows in memory, not yet screened or stored. Raises Refused.

    With the session's `trace`, the message gets our Received header on top (RFC 5321 §4.4)."""
    submission = SmtpSubmission(mail_from=mail_from, rcpt_tos=rcpt_tos, raw=raw, smtputf8=smtputf8, trace=trace)
    result = prepare(smtp_caller(credential), submission)
    if isinstance(result, Refused):
        raise result
    return result


@dataclass
class SmtpSubmission:
    """A message submitted over SMTP (sending.intake.accept's Submission): the bytes after DATA and the envelope."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    smtputf8: bool = False
    trace: SmtpTrace | None = None  # the session, for our Received header
    headers: EmailMessage | None = field(default=None, repr=False)
    # A raw message given to an API (SES's Raw content) rather than over SMTP: its stream is the request's
    # (checked against the key in step 1), never an X-Postwerk-Stream header, which is removed.
    options: SendOptions | None = None

    def sender_domains(self) -> list[str]:
        """Read the message far enough to know its From domains."""
        self.raw = normalize_newlines(self.raw)
        if mime_too_deep(self.raw):
            raise Refused.smtp(f"554 5.6.0 MIME nesting deeper than {MAX_MIME_DEPTH} levels")
        self.headers = parse_headers(self.raw)
        froms = from_addresses(self.headers)
        if not froms:
            raise Refused.smtp("550 5.6.0 The message has no From header")
        domains = []
        for address in froms:
            try:
                domains.append(parse_mailbox(address).domain)
            except AddressError as exc:
                raise Refused.smtp("550 5.6.0 The From header is not a valid address") from exc
        return domains

    def compose(self, caller: Caller, domain: Domain) -> Prepared:
        """Normalise: a Message-ID and Date where missing, no Bcc or Return-Path, our Received on top; then the rows."""
        assert self.headers is not None
        raw, headers = self.raw, self.headers
        # After the From checks, which answer a hostile From with their own 550.
        if b"\x00" in raw.partition(b"\r\n\r\n")[0]:
            # RFC 5322 allows no NUL in a header, and PostgreSQL stores none in text: refused for good here rather
            # than failing the insert with a 451 the client would retry forever.
            raise Refused.smtp("554 5.6.0 NUL characters are not allowed in the message header")
        recipients = [("to", check_recipient(r)) for r in self.rcpt_tos]
        envelope_from = _envelope_sender(caller, self.mail_from)

        now = timezone.now()
        message_pk = uuid7()
        added: list[tuple[str, str]] = []
        message_id = raw_header(headers, "Message-ID") or ""
        if not message_id or len(message_id) > 900:
            message_id = f"<{message_pk}@{settings.POSTWERK_HOSTNAME}>"
            added.append(("Message-ID", message_id))
        if raw_header(headers, "Date") is None:
            added.append(("Date", date_header(now)))
        control = {name.lower() for name in headers.keys() if name.lower().startswith(CONTROL_PREFIX)}
        priority = _priority(raw_header(headers, PRIORITY_HEADER)) if control else NORMAL
        raw = prepend_headers(remove_headers(raw, STRIPPED_HEADERS | control), added)
        if self.trace is not None:
            by = settings.POSTWERK_HOSTNAME
            raw = received_header(self.trace, by=by, queue_id=str(message_pk), when=now, smtputf8=self.smtputf8) + raw
        head = raw.partition(b"\r\n\r\n")[0]
        prepared = prepared_rows(
            organization=caller.organization,
            domain=domain,
            message_pk=message_pk,
            message_id=message_id,
            raw=raw,
            mail_from=envelope_from.envelope_address,
            subject=_subject(headers),
            recipients=recipients,
            smtputf8=self.smtputf8 or not head.isascii() or any(m.smtputf8 for _, m in recipients),
            smtp_credential=caller.smtp_credential,
            api_key=caller.api_key,
            now=now,
        )
        if caller.smtp_credential is None:
            options_apply(prepared, caller, self.options or SendOptions())
            return prepared
        # The message's own X-Postwerk-Stream header, else the credential's stream, else `transactional`.
        named = raw_header(headers, STREAM_HEADER)
        stream = " ".join(named.split()) if named is not None else caller.smtp_credential.stream
        field = STREAM_HEADER if named is not None else "stream"
        options_apply(prepared, caller, SendOptions(stream=stream or None, stream_field=field, priority=priority))
        return prepared


def _envelope_sender(caller: Caller, address: str) -> Mailbox:
    """The envelope sender, at a domain the caller may use: checked as MAIL FROM is over SMTP, or for an API's
    raw message (no SMTP credential) by the same authorise and guard steps as its From domains."""
    if caller.smtp_credential is not None:
        return check_sender(caller.smtp_credential, address)
    try:
        mailbox = parse_mailbox(address)
        guard(caller, authorise(caller, mailbox.domain, what="Sender"), mailbox.domain)
    except AddressError as exc:
        raise Refused.smtp("553 5.1.7 Bad sender address syntax") from exc
    except Refused as exc:
        raise Refused(
            f"The envelope sender's domain may not be used: {exc.message}",
            code="mail_from_not_allowed",
            http_status=exc.http_status,
            fields={"mail_from": [exc.message]},
        ) from exc
    return mailbox


def _priority(value: str | None) -> str:
    """The X-Postwerk-Priority header's priority (absent: normal). Raises Refused (550) for another value."""
    if value is None:
        return NORMAL
    priority = value.strip().lower()
    if priority not in PRIORITIES:
        raise Refused.smtp(f"550 5.6.0 {PRIORITY_HEADER} must be one of {', '.join(PRIORITIES)}")
    return priority


def _subject(headers: EmailMessage) -> str:
    """The Subject for display and search: encoded words decoded; a plain ASCII one read as it is, without the
    header registry's parse."""
    subject = raw_header(headers, "Subject") or ""
    if "=?" in subject or not subject.isascii():
        subject = str(headers.get("Subject", ""))
    return " ".join(subject.split())[:998]
