"""Celery tasks: thin wrappers that carry ids and call one service each."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from sending.delivery import deliver as delivery
from sending.delivery import queueing
from sending.delivery import sweep as sweeping
from sending.domains import verification as domain_verification
from sending.feedback import bounce_processing, inbound_intake, suppressions
from sending.models import Domain, IdempotencyKey
from sending.operations import retention, tls_reports
from sending.reputation import blocklists


@shared_task(name=queueing.DELIVER_TASK)
def deliver(recipient_ids: list[str], domain: str | None = None, lane: str = "") -> int:
    return delivery.deliver(recipient_ids, domain=domain, lane=lane)


@shared_task(name="sending.tasks.sweep")
def sweep() -> dict[str, int]:
    report = sweeping.sweep()
    inbound = bounce_processing.inbound_due()
    for inbound_id in inbound:
        process_inbound.delay(inbound_id)
    return {"rescued": report.rescued, "enqueued": report.enqueued, "inbound": len(inbound)}


@shared_task(name="sending.tasks.expire_idempotency_keys")
def expire_idempotency_keys() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.POSTWERK_IDEMPOTENCY_TTL)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


@shared_task(name="sending.tasks.check_due_domains")
def check_due_domains() -> int:
    due = domain_verification.domains_due()
    for domain_id in due:
        check_domain.delay(domain_id)
    return len(due)


@shared_task(name="sending.tasks.check_domain")
def check_domain(domain_id: int) -> None:
    domain = Domain.objects.filter(pk=domain_id).first()
    if domain is not None:
        domain_verification.domain_verify(domain=domain)


@shared_task(name=inbound_intake.PROCESS_INBOUND_TASK)
def process_inbound(inbound_id: str) -> str:
    return bounce_processing.inbound_process(inbound_id)


@shared_task(name="sending.tasks.expire_suppressions")
def expire_suppressions() -> int:
    return suppressions.suppressions_expire()


@shared_task(name="sending.tasks.retention_purge")
def retention_purge() -> dict[str, int]:
    return retention.retention_purge().as_dict()


@shared_task(name="sending.tasks.reputation_recompute")
def reputation_recompute() -> dict[str, int]:
    """Recompute the reputation of organizations with outcomes since about the last run (twice the interval,
    so a late or skipped run loses nothing)."""
    from sending.reputation import ip_reputation
    from sending.reputation import rates as reputation

    since = timezone.now() - timedelta(seconds=2 * settings.POSTWERK_REPUTATION_INTERVAL)
    organizations = reputation.organizations_with_recent_outcomes(since)
    changed = sum(len(reputation.reputation_recompute(org)) for org in organizations)
    ips_changed = len(ip_reputation.ip_reputation_recompute())
    return {"organizations": len(organizations), "changed": changed, "ips_changed": ips_changed}


@shared_task(name="sending.tasks.held_maintenance")
def held_maintenance() -> dict[str, int]:
    """Expire old held mail; release send-limit holds whose window has reopened."""
    from sending.reputation import holds

    return holds.held_maintenance()


@shared_task(name="sending.tasks.check_blocklists")
def check_blocklists() -> dict[str, int]:
    results = blocklists.blocklists_check()
    return {status: sum(1 for _, a in results if a.status == status) for status in ("listed", "clear", "error")}


@shared_task(name="sending.tasks.tls_reports_send")
def tls_reports_send() -> int:
    """TLS-RPT (RFC 8460): yesterday's reports to the domains that ask for them (beat, hourly; each day once)."""
    return tls_reports.tls_reports_send()
