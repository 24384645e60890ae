"""Accepting mail on the inbound MX: only return-path, feedback and DMARC report addresses of hosts Postwerk
knows, stored raw in one transaction before anyone parses it, so nothing is lost when parsing fails."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.celery import app as celery_app
from sending.errors import Refused
from sending.models import Domain, InboundMessage
from sending.return_path import DMARC_REPORTS_LOCAL_PART, is_verp

# Published by name (config/celery.py); the task is sending.tasks.process_inbound.
PROCESS_INBOUND_TASK = "sending.tasks.process_inbound"

log = logging.getLogger(__name__)

RELAY_DENIED = "550 5.7.1 Relay denied"
# InboundMessage.type of mail to the DMARC report address, set when it is stored (sending.feedback.dmarc_reports).
DMARC_REPORT = "dmarc_report"


def is_return_path_host(host: str) -> Domain | None | bool:
    """True for the platform's return-path domain, the Domain for a domain's return-path host, else False."""
    host = host.lower().rstrip(".")
    if host == settings.POSTWERK_RETURN_PATH_DOMAIN.lower():
        return True
    label, _, parent = host.partition(".")
    domain = Domain.objects.filter(name=parent).first() if parent else None
    if domain is not None and domain.return_path_host == host:
        return domain
    return False


def check_inbound_recipient(address: str) -> None:
    """RCPT on the inbound MX: a VERP or feedback address at a known return-path host, or 550 5.7.1.

    A VERP address whose token does not check out is still accepted here: it is stored and not applied, so a
    forger learns nothing from the reply.
    """
    local, at, host = address.strip().strip("<>").rpartition("@")
    if not at or not local or not host or any(c in address for c in "\r\n\0 "):
        raise Refused.smtp("553 5.1.3 Bad recipient address syntax")
    if not is_return_path_host(host):
        raise Refused.smtp(RELAY_DENIED)
    local = local.lower()
    if is_verp(f"{local}@{host}") or local in {p.lower() for p in settings.POSTWERK_FEEDBACK_LOCAL_PARTS}:
        return
    if not is_dmarc_report_address(local, host):
        raise Refused.smtp(RELAY_DENIED)


def is_dmarc_report_address(local: str, host: str) -> bool:
    """dmarc-reports@ a return-path host (the recommended rua=), or the operator's own POSTWERK_DMARC_RUA."""
    configured = settings.POSTWERK_DMARC_RUA.strip()
    if configured.lower().startswith("mailto:"):
        configured = configured[len("mailto:") :]
    configured = configured.split("!", 1)[0]  # without a size limit (RFC 7489 §6.4)
    return local.lower() == DMARC_REPORTS_LOCAL_PART or f"{local}@{host}".lower() == configured.lower()


def _kind(rcpt_tos: list[str]) -> str:
    """`dmarc_report` when every recipient is a DMARC report address: it is kept, never read as a bounce."""
    parts = [a.strip().strip("<>").rpartition("@") for a in rcpt_tos]
    return DMARC_REPORT if parts and all(is_dmarc_report_address(p[0], p[2]) for p in parts) else ""


def inbound_store(*, peer_ip: str | None, mail_from: str, rcpt_tos: list[str], raw: bytes) -> InboundMessage:
    """Commit the raw report, then queue its processing (the sweep requeues it if that message is lost)."""
    with transaction.atomic():
        inbound = InboundMessage.objects.create(
            peer_ip=peer_ip or "",
            mail_from=(mail_from or "")[:320],
            rcpt_to=list(rcpt_tos),
            raw=raw,
            size=len(raw),
            type=_kind(rcpt_tos),
            # The sweep leaves it alone while its task is on the way to a worker.
            next_attempt_at=timezone.now() + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE),
        )
        transaction.on_commit(lambda: _enqueue(inbound.pk))
    return inbound


def _enqueue(inbound_id: uuid.UUID) -> None:
    try:
        celery_app.send_task(PROCESS_INBOUND_TASK, args=[str(inbound_id)])
    except Exception:  # the broker is down: the row is committed, and the sweep will queue it
        log.exception("could not queue inbound message %s", inbound_id)
