"""Accepting a message submitted over SMTP: the same rows, queue, signing and delivery as the send API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import SmtpCredential

from .addresses import AddressError, Mailbox, parse_mailbox
from .domain_guard import Refusal, domain_refusal
from .domains import sender_domain
from .holds import SendingRefused, holds_screen, smtp_sender_refusal
from .mime_limits import MAX_MIME_DEPTH, mime_too_deep
from .models import Domain, Message, uuid7
from .raw_message import (
    date_header,
    from_addresses,
    normalize_newlines,
    parse_headers,
    prepend_headers,
    raw_header,
    remove_headers,
)
from .submission import MessageTooLarge, Prepared, messages_submit, prepared_rows, recipients_screen
from .trace_headers import SmtpTrace, received_header

# Bcc must never reach a recipient; Return-Path belongs to the final delivery (RFC 5321 §4.4).
STRIPPED_HEADERS = {"bcc", "return-path"}


@dataclass
class Refused(Exception):
    """The submission is refused with this SMTP reply."""

    reply: str

    def __str__(self) -> str:
        return self.reply


def credential_domain(credential: SmtpCredential, address_domain: str) -> Domain | None:
    """The organization's domain this credential may send as `address_domain`, or None.

    Remembered on the credential object, which lives as long as the SMTP session: a session sending many
    messages looks each domain up once, not at MAIL and again after DATA for every message."""
    memo: dict[str, Domain | None] | None = getattr(credential, "_postwerk_domains", None)
    if memo is None:
        memo = credential._postwerk_domains = {}  # type: ignore[attr-defined]
    key = address_domain.lower()
    if key not in memo:
        memo[key] = _credential_domain(credential, key)
    return memo[key]


def _credential_domain(credential: SmtpCredential, address_domain: str) -> Domain | None:
    domain = sender_domain(credential.organization, address_domain)
    if domain is None:
        return None
    allowed = {d.pk for d in credential.allowed_domains.all()}
    if allowed and domain.pk not in allowed:
        return None
    return domain


def check_sender(credential: SmtpCredential, address: str) -> Mailbox:
    """MAIL FROM: a valid address at a domain this credential may use."""
    try:
        mailbox = parse_mailbox(address)
    except AddressError as exc:
        raise Refused("553 5.1.7 Bad sender address syntax") from exc
    domain = credential_domain(credential, mailbox.domain)
    if domain is None:
        raise Refused(f"550 5.7.1 Sender domain {mailbox.domain} is not allowed for this credential")
    if settings.POSTWERK_REQUIRE_VERIFIED_DOMAINS and domain.verified_at is None:
        raise Refused(f"550 5.7.1 {_one_line(domain_refusal(domain, mailbox.domain))}")
    # Organizations that reject while paused or over their limit hear it here when that is already known.
    refusal = smtp_sender_refusal(credential, domain)
    if refusal is not None:
        raise Refused(refusal)
    return mailbox


def _one_line(refusal: Refusal | None) -> str:
    return " ".join(str(refusal.message if refusal else "").split())[:400]  # RFC 5321 §4.5.3.1.5: 512-octet lines


def check_recipient(address: str) -> Mailbox:
    try:
        return parse_mailbox(address)
    except AddressError as exc:
        raise Refused("553 5.1.3 Bad recipient address syntax") from exc


def smtp_message_submit(
    *, credential: SmtpCredential, mail_from: str, rcpt_tos: list[str], raw: bytes, smtputf8: bool = False
) -> Message:
    """Store a submitted message and its recipients in one transaction. Raises Refused."""
    prepared = smtp_message_prepare(
        credential=credential, mail_from=mail_from, rcpt_tos=rcpt_tos, raw=raw, smtputf8=smtputf8
    )
    smtp_messages_store([prepared])
    return prepared.message


def smtp_messages_store(prepared: Sequence[Prepared]) -> None:
    """Store prepared messages, of any organizations, in one transaction: the SMTP server's group commit.
    Each organization's messages are screened against its suppressions and submitted together."""
    by_organization: dict[int, list[Prepared]] = {}
    for p in prepared:
        by_organization.setdefault(p.message.organization_id, []).append(p)
    # The suppression lookups first, each on its own: outside the transaction they need no BEGIN of their own.
    for group in by_organization.values():
        recipients_screen(organization=group[0].message.organization, prepared=group)
    with transaction.atomic():
        for group in by_organization.values():
            messages_submit(organization=group[0].message.organization, prepared=group)


def smtp_message_prepare(
    *,
    credential: SmtpCredential,
    mail_from: str,
    rcpt_tos: list[str],
    raw: bytes,
    smtputf8: bool = False,
    trace: SmtpTrace | None = None,
) -> Prepared:
    """Check a submitted message and build its rows in memory, not yet stored. Raises Refused.

    With the session's `trace`, the message gets our Received header on top (RFC 5321 §4.4)."""
    raw = normalize_newlines(raw)
    if mime_too_deep(raw):
        raise Refused(f"554 5.6.0 MIME nesting deeper than {MAX_MIME_DEPTH} levels")
    headers = parse_headers(raw)
    froms = from_addresses(headers)
    if not froms:
        raise Refused("550 5.6.0 The message has no From header")
    for address in froms:
        try:
            from_box = parse_mailbox(address)
        except AddressError as exc:
            raise Refused("550 5.6.0 The From header is not a valid address") from exc
        domain = credential_domain(credential, from_box.domain)
        if domain is None:
            raise Refused(f"550 5.7.1 From domain {from_box.domain} is not allowed for this credential")
        refusal = domain_refusal(domain, from_box.domain)
        if refusal is not None:
            raise Refused(f"550 5.7.1 {_one_line(refusal)}")
    domain = credential_domain(credential, parse_mailbox(froms[0]).domain)
    assert domain is not None
    # After the From checks, which answer a hostile From with their own 550.
    if b"\x00" in raw.partition(b"\r\n\r\n")[0]:
        # RFC 5322 allows no NUL in a header, and PostgreSQL stores none in text: refused for good here rather than
        # failing the insert with a 451 the client would retry forever.
        raise Refused("554 5.6.0 NUL characters are not allowed in the message header")
    recipients = [("to", check_recipient(r)) for r in rcpt_tos]
    envelope_from = check_sender(credential, mail_from)

    now = timezone.now()
    message_pk = uuid7()
    added: list[tuple[str, str]] = []
    message_id = raw_header(headers, "Message-ID") or ""
    if not message_id or len(message_id) > 900:
        message_id = f"<{message_pk}@{settings.POSTWERK_HOSTNAME}>"
        added.append(("Message-ID", message_id))
    if raw_header(headers, "Date") is None:
        added.append(("Date", date_header(now)))
    raw = prepend_headers(remove_headers(raw, STRIPPED_HEADERS), added)
    if trace is not None:
        by = settings.POSTWERK_HOSTNAME
        raw = received_header(trace, by=by, queue_id=str(message_pk), when=now, smtputf8=smtputf8) + raw
    head = raw.partition(b"\r\n\r\n")[0]
    try:
        prepared = prepared_rows(
            organization=credential.organization,
            domain=domain,
            message_pk=message_pk,
            message_id=message_id,
            raw=raw,
            mail_from=envelope_from.envelope_address,
            subject=_subject(headers),
            recipients=recipients,
            smtputf8=smtputf8 or not head.isascii() or any(m.smtputf8 for _, m in recipients),
            smtp_credential=credential,
            now=now,
        )
    except MessageTooLarge as exc:
        raise Refused("552 5.3.4 Message size exceeds the fixed maximum") from exc
    # Held or refused here, in the session's own thread, so the send counter's statement stays out of the
    # group commit's transaction and one refusal never fails other sessions' messages.
    try:
        holds_screen(organization=credential.organization, prepared=[prepared])
    except SendingRefused as refused:
        raise Refused(refused.smtp_reply) from refused
    return prepared


def _subject(headers: EmailMessage) -> str:
    """The Subject for display and search: encoded words decoded; a plain ASCII one read as it is, without the
    header registry's parse."""
    subject = raw_header(headers, "Subject") or ""
    if "=?" in subject or not subject.isascii():
        subject = str(headers.get("Subject", ""))
    return " ".join(subject.split())[:998]
