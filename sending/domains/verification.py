"""Running a domain's DNS checks and acting on them: stored results, verification, DKIM key activation,
events when something breaks or is fixed.

A failed lookup (status `error`) never changes what a domain is allowed to do: only a definite answer from
DNS does, so one timeout cannot stop a domain's mail.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sending.delivery import signing_keys
from sending.domains.checks.checks import check_dkim, check_ownership, run_checks
from sending.domains.checks.spec import CheckResult, CheckStatus, DomainSpec, error_result
from sending.domains.platform_names import platform_name_problems, platform_names_message
from sending.domains.service import domain_spec
from sending.models import DkimKey, DnsCheck, DnsCheckStatus, Domain, Event, EventType
from sending.states import organization_events

log = logging.getLogger(__name__)


def domain_verify(*, domain: Domain) -> list[DnsCheck]:
    """Check the domain's DNS now (outside any transaction: lookups can take seconds), then record it."""
    spec = domain_spec(domain)
    problems = platform_name_problems()
    if problems:
        results = _owner_checks_only(spec, platform_names_message(problems))
    else:
        results = run_checks(spec)
    return domain_record_checks(domain=domain, results=results)


def _owner_checks_only(spec: DomainSpec, message: str) -> list[CheckResult]:
    """Ownership and DKIM, which name nothing of the platform's; the checks that compare the domain's records
    with the platform's names cannot say what is right, so they report an error (which changes nothing)."""
    results = [check_ownership(spec), *(check_dkim(spec, key) for key in spec.dkim_keys)]
    results.append(error_result("spf", message, scope="from"))
    results.append(error_result("return_path", message))
    results.append(error_result("spf", message, scope="return_path"))
    results.append(error_result("dmarc", message))
    return results


@transaction.atomic
def domain_record_checks(*, domain: Domain, results: list[CheckResult]) -> list[DnsCheck]:
    domain = Domain.objects.select_for_update().get(pk=domain.pk)
    now = timezone.now()
    previous = {c.name: c for c in domain.dns_checks.all()}
    by_key = {r.key: r for r in results}
    events: list[Event] = []
    stored: list[DnsCheck] = []
    for key, result in by_key.items():
        check, event = _store(domain, previous.get(key), key, result, now)
        stored.append(check)
        if event is not None:
            events.append(event)
    # Checks for keys that no longer exist (a retired selector) are dropped.
    domain.dns_checks.exclude(name__in=by_key).delete()

    events.extend(_apply_dkim(domain, by_key, now))
    definite = {k: r for k, r in by_key.items() if r.status is not CheckStatus.ERROR}
    if "ownership" in definite and definite["ownership"].ok and domain.ownership_verified_at is None:
        # Proven once is enough: the DKIM record, checked for as long as the domain lives, keeps proving it.
        domain.ownership_verified_at = now
    rsa = _newest_active(domain, DkimKey.Algorithm.RSA)
    if rsa is not None and f"dkim:{rsa.selector}" in definite:
        domain.dkim_ok = definite[f"dkim:{rsa.selector}"].ok
    if "return_path" in definite:
        domain.return_path_ok = definite["return_path"].ok
    if "spf:return_path" in definite:
        # DMARC's SPF alignment is about the envelope sender, which is the return-path host.
        domain.spf_ok = definite["spf:return_path"].ok
    if "dmarc" in definite:
        domain.dmarc = _dmarc_policy(definite["dmarc"])
    if "inbound_mx" in definite:
        domain.inbound_mx_ok = definite["inbound_mx"].ok
    if domain.verified_at is None and domain.ownership_verified_at and rsa is not None and domain.dkim_ok:
        domain.verified_at = now
        events.append(_event(domain, EventType.DOMAIN_VERIFIED, now, {"domain": domain.name}))
    domain.checked_at = now
    interval = (
        settings.POSTWERK_DOMAIN_CHECK_INTERVAL_VERIFIED
        if domain.verified_at
        else settings.POSTWERK_DOMAIN_CHECK_INTERVAL_UNVERIFIED
    )
    domain.next_check_at = now + timedelta(seconds=interval)
    domain.save()
    organization_events(events)
    return sorted(stored, key=lambda c: c.name)


def _store(domain: Domain, check: DnsCheck | None, key: str, result: CheckResult, now) -> tuple[DnsCheck, Event | None]:
    """Upsert one check row; an event when a definite status moves away from ok or back to it."""
    was = _definite_status(check)
    details = dict(result.details)
    if result.status is CheckStatus.ERROR and was is not None:
        details["last_definite_status"] = was
    if check is None:
        check = DnsCheck(domain=domain, name=key, changed_at=now)
    elif check.status != result.status:
        check.changed_at = now
    check.status, check.message, check.details, check.checked_at = result.status, result.message, details, now
    if result.ok:
        check.ok_at = now
    check.save()
    if result.status is CheckStatus.ERROR or was is None or (was == DnsCheckStatus.OK) == result.ok:
        return check, None
    kind = EventType.DOMAIN_DNS_FIXED if result.ok else EventType.DOMAIN_DNS_BROKEN
    return check, _event(
        domain, kind, now, {"domain": domain.name, "check": key, "status": result.status, "message": result.message}
    )


def _definite_status(check: DnsCheck | None) -> str | None:
    if check is None:
        return None
    if check.status == DnsCheckStatus.ERROR:
        return check.details.get("last_definite_status")
    return check.status


def _apply_dkim(domain: Domain, by_key: dict[str, CheckResult], now) -> list[Event]:
    """A pending key whose record is now in DNS starts signing; it retires the older key of its algorithm."""
    events = []
    for key in domain.dkim_keys.filter(state=DkimKey.State.PENDING).order_by("created_at"):
        result = by_key.get(f"dkim:{key.selector}")
        if result is None or not result.ok:
            continue
        older = list(domain.dkim_keys.filter(algorithm=key.algorithm, state=DkimKey.State.ACTIVE).exclude(pk=key.pk))
        key.state, key.verified_at = DkimKey.State.ACTIVE, now
        key.save(update_fields=["state", "verified_at"])
        for old in older:
            old.state, old.retired_at = DkimKey.State.RETIRED, now
            old.save(update_fields=["state", "retired_at"])
        details: dict = {"domain": domain.name, "selector": key.selector, "algorithm": key.algorithm}
        if older:
            details["retired"] = [old.record_name for old in older]
            details["message"] = (
                f"Postwerk now signs with {key.record_name}. The old record"
                f"{'s' if len(older) > 1 else ''} {', '.join(old.record_name for old in older)} may be removed "
                "once mail signed with it has been delivered (a few days)."
            )
        events.append(_event(domain, EventType.DKIM_KEY_ACTIVATED, now, details))
    if events:
        signing_keys.forget(domain.pk)
    return events


def _newest_active(domain: Domain, algorithm: str) -> DkimKey | None:
    return domain.dkim_keys.filter(algorithm=algorithm, state=DkimKey.State.ACTIVE).order_by("-created_at").first()


def _dmarc_policy(result: CheckResult) -> dict:
    """The record the send-time alignment guard needs; {} when there is none receivers would honour."""
    if "tags" not in result.details:
        return {}  # missing, several records, or malformed: receivers apply no policy
    return {"text": result.details["records"][0], "found_at": result.details["found_at"]}


def _event(domain: Domain, kind: str, now, details: dict) -> Event:
    return Event(organization_id=domain.organization_id, domain=domain, type=kind, created_at=now, details=details)


def domains_due(limit: int = 500, lease: int = 900) -> list[int]:
    """Domains whose check is due, pushed `lease` seconds ahead so the next beat does not queue them twice."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            Domain.objects.filter(next_check_at__lte=now).order_by("next_check_at").values_list("pk", flat=True)[:limit]
        )
        Domain.objects.filter(pk__in=due).update(next_check_at=now + timedelta(seconds=lease))
    return due
