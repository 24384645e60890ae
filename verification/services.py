"""Verifying addresses: single ones inline, lists as jobs run by a worker.

The pipeline for any number of addresses (`addresses_verify`):
1. name checks for each address (syntax, role, disposable, free provider, typo), and one suppression query;
2. addresses grouped by domain, and each domain's unique addresses cut into units of at most
   POSTWERK_VERIFY_ADDRESSES_PER_CONNECTION, interleaved across domains;
3. per unit: the domain's MX route (mail.dns, cached by TTL), the address cache, then one SMTP connection for
   the addresses not cached (verification.probe, within the MX host's connection slots);
4. per address: the verdict (verification.checks).
A job runs its units on POSTWERK_VERIFY_JOB_THREADS threads and records each unit's results as it finishes.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.db.models import Count, DateTimeField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import ApiKey, Organization
from config.celery import app as celery_app
from mail.dns import Route, RouteStatus, mx_route
from mail.due import due_taken
from mail.errors import PostwerkError
from mail.smtp_client import Reply
from sending.public import suppressed_addresses
from verification.checks import AddressFacts, ProbeOutcome, Stage, address_facts, result_json
from verification.models import VerificationJob, VerificationResult
from verification.probe import Target, probe_domain
from verification.slots import slots_forget_idle

# Published by name (config/celery.py); the task is verification.tasks.run_job.
RUN_JOB_TASK = "verification.tasks.run_job"

log = logging.getLogger(__name__)

# A web request waits at most this long for a free connection to a busy MX, then answers `unknown`
# (`mx_busy`); a job's worker waits POSTWERK_VERIFY_SLOT_WAIT.
INLINE_SLOT_WAIT = 5.0
QUOTA_WINDOW = timedelta(hours=1)

Answer = dict[str, object]
Recorder = Callable[[list[tuple[int, Answer]]], bool]


# --- caches (the shared Django cache: Redis in production) ----------------------------------------------------


def _address_key(envelope: str) -> str:
    return "verify:addr:" + hashlib.sha256(envelope.encode()).hexdigest()


def _catch_all_key(domain: str) -> str:
    return "verify:catch-all:" + hashlib.sha256(domain.encode()).hexdigest()


def _cached_outcomes(envelopes: list[str], catch_all: bool | None) -> dict[str, ProbeOutcome]:
    found = cache.get_many([_address_key(e) for e in envelopes])
    outcomes = {}
    for envelope in envelopes:
        entry = found.get(_address_key(envelope))
        if entry is None:
            continue
        reply = Reply(entry["code"], entry["enhanced"], entry["text"])
        known = entry["catch_all"] if entry["catch_all"] is not None else catch_all
        outcomes[envelope] = ProbeOutcome(Stage.RCPT, reply, entry["mx_host"], entry["tls"], known, cached=True)
    return outcomes


def _remember(domain: str, outcomes: dict[str, ProbeOutcome]) -> None:
    # Only answers about the mailbox itself are kept: a 4xx, a timeout or a policy block may be gone in minutes.
    entries = {
        _address_key(envelope): {
            "code": o.reply.code,
            "enhanced": o.reply.enhanced,
            "text": o.reply.text[:500],
            "mx_host": o.mx_host,
            "tls": o.tls,
            "catch_all": o.catch_all,
        }
        for envelope, o in outcomes.items()
        if o.definite and o.reply is not None
    }
    if entries:
        cache.set_many(entries, timeout=settings.POSTWERK_VERIFY_ADDRESS_CACHE_TTL)
    known = [o.catch_all for o in outcomes.values() if o.catch_all is not None]
    if known:
        cache.set(_catch_all_key(domain), known[-1], timeout=settings.POSTWERK_VERIFY_DOMAIN_CACHE_TTL)


# --- the pipeline -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """Addresses of one domain probed over one connection, each with the positions it was given at."""

    domain: str
    addresses: list[tuple[AddressFacts, list[int]]]


def _units(facts: list[AddressFacts]) -> list[Unit]:
    by_domain: dict[str, dict[str, tuple[AddressFacts, list[int]]]] = defaultdict(dict)
    for i, f in enumerate(facts):
        if f.valid:  # a repeated address is probed once
            by_domain[f.domain].setdefault(f.envelope, (f, []))[1].append(i)
    size = max(1, settings.POSTWERK_VERIFY_ADDRESSES_PER_CONNECTION)
    per_domain = []
    for domain, envelopes in by_domain.items():
        items = list(envelopes.values())
        per_domain.append([Unit(domain, items[k : k + size]) for k in range(0, len(items), size)])
    # Round robin over domains, so a pool of threads spreads over many MX hosts instead of queueing on one.
    return [unit for batch in itertools.zip_longest(*per_domain) for unit in batch if unit is not None]


def _run_unit(unit: Unit, suppressed: set[str], slot_wait: float) -> list[tuple[int, Answer]]:
    route: Route | None = None
    outcomes: dict[str, ProbeOutcome] = {}
    try:
        route = mx_route(unit.domain)
        disposable = unit.addresses[0][0].disposable  # a property of the domain
        if route.status is RouteStatus.OK and not disposable:
            catch_all = cache.get(_catch_all_key(unit.domain))
            outcomes = _cached_outcomes([f.envelope for f, _ in unit.addresses], catch_all)
            targets = [Target(f.envelope, f.smtputf8) for f, _ in unit.addresses if f.envelope not in outcomes]
            if targets:
                probed = probe_domain(unit.domain, route, targets, catch_all=catch_all, slot_wait=slot_wait)
                _remember(unit.domain, probed)
                outcomes.update(probed)
    except Exception as exc:  # a bug must not lose the unit: its addresses come back `unknown`, saying why
        log.exception("verifying addresses at %s failed", unit.domain)
        failed = ProbeOutcome(Stage.ERROR, Reply(451, "4.3.0", f"internal error: {exc}"))
        outcomes = {f.envelope: failed for f, _ in unit.addresses}
    answers = []
    for f, positions in unit.addresses:
        answer = result_json(f, route, outcomes.get(f.envelope), suppressed=f.envelope.lower() in suppressed)
        answers.extend((i, answer) for i in positions)
    return answers


def _run_unit_in_thread(unit: Unit, suppressed: set[str], slot_wait: float) -> list[tuple[int, Answer]]:
    try:
        return _run_unit(unit, suppressed, slot_wait)
    finally:
        connections.close_all()  # this thread's own connections (slot claims), not the caller's


def addresses_verify(
    *,
    organization_id: int,
    addresses: list[str],
    slot_wait: float,
    threads: int = 1,
    record: Recorder | None = None,
) -> list[Answer | None]:
    """Every address's answer, in order. `record` gets each finished batch of (position, answer) and returns
    False to stop early (the rest stay None)."""
    facts = [address_facts(a) for a in addresses]
    suppressed = set(suppressed_addresses(organization_id, [f.envelope for f in facts if f.valid]))
    answers: list[Answer | None] = [None] * len(facts)

    def finish(batch: list[tuple[int, Answer]]) -> bool:
        # A repeated address is probed once; each position still names the address as given there.
        batch = [(i, {**answer, "address": addresses[i]}) for i, answer in batch]
        for i, answer in batch:
            answers[i] = answer
        return record(batch) if record is not None else True

    invalid = [(i, result_json(f, None, None, suppressed=False)) for i, f in enumerate(facts) if not f.valid]
    if invalid and not finish(invalid):
        return answers
    units = _units(facts)
    if threads <= 1 or len(units) <= 1:
        for unit in units:
            if not finish(_run_unit(unit, suppressed, slot_wait)):
                break
        return answers
    with ThreadPoolExecutor(max_workers=min(threads, len(units)), thread_name_prefix="verify") as pool:
        futures = [pool.submit(_run_unit_in_thread, unit, suppressed, slot_wait) for unit in units]
        for future in as_completed(futures):
            if not finish(future.result()):
                pool.shutdown(wait=True, cancel_futures=True)
                break
    return answers


# --- quota -------------------------------------------------------------------------------------------------


class QuotaExceeded(PostwerkError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def verification_quota_check(*, organization: Organization, count: int) -> None:
    """Refuse more than POSTWERK_VERIFY_HOURLY_LIMIT addresses per organization per rolling hour.

    Every probe spends the platform's IP reputation, so the budget counts addresses, not requests. Two
    concurrent requests may both pass and overshoot by one request's worth; the per-MX slots still hold.
    """
    limit = settings.POSTWERK_VERIFY_HOURLY_LIMIT
    if not limit:
        return
    now = timezone.now()
    recent = VerificationJob.objects.filter(organization=organization, created_at__gte=now - QUOTA_WINDOW)
    used = recent.aggregate(n=Sum("total"))["n"] or 0
    if used + count <= limit:
        return
    if count > limit:
        raise QuotaExceeded(f"At most {limit} addresses per hour; this request has {count}.", 3600)
    oldest = recent.order_by("created_at").values_list("created_at", flat=True).first() or now
    retry_after = max(1, int((oldest + QUOTA_WINDOW - now).total_seconds()) + 1)
    raise QuotaExceeded(f"{used} of {limit} addresses verified in the last hour; {count} more do not fit.", retry_after)


# --- single address ------------------------------------------------------------------------------------------------


def verification_single(
    *, organization: Organization, api_key: ApiKey | None, address: str
) -> tuple[VerificationJob, Answer]:
    """Verify one address now (probing outside any transaction), then store it as a completed job of one."""
    answer = addresses_verify(organization_id=organization.pk, addresses=[address], slot_wait=INLINE_SLOT_WAIT)[0]
    assert answer is not None
    now = timezone.now()
    with transaction.atomic():
        job = VerificationJob.objects.create(
            organization=organization,
            api_key=api_key,
            state=VerificationJob.State.COMPLETED,
            total=1,
            created_at=now,
            started_at=now,
            finished_at=now,
        )
        VerificationResult.objects.create(job=job, position=0, address=address, **_row_fields(answer, now))
    return job, answer


def _row_fields(answer: Answer, now: datetime) -> dict[str, object]:
    return {
        "normalized": answer["normalized"] or "",
        "result": answer["result"],
        "reasons": answer["reasons"],
        "checks": answer["checks"],
        "checked_at": now,
    }


# --- jobs ----------------------------------------------------------------------------------------------------------


def verification_job_create(
    *, organization: Organization, api_key: ApiKey | None, addresses: list[str]
) -> VerificationJob:
    """Store the job and its addresses; a worker is asked to run it once they are committed."""
    now = timezone.now()
    with transaction.atomic():
        job = VerificationJob.objects.create(
            organization=organization, api_key=api_key, total=len(addresses), created_at=now, enqueued_at=now
        )
        VerificationResult.objects.bulk_create(
            [VerificationResult(job=job, position=i, address=a) for i, a in enumerate(addresses)], batch_size=500
        )
        transaction.on_commit(lambda: _enqueue([str(job.pk)]))
    return job


def _enqueue(job_ids: list[str]) -> None:
    try:
        for job_id in job_ids:
            celery_app.send_task(RUN_JOB_TASK, args=[job_id])
    except Exception:  # the job is committed; the sweep asks again once POSTWERK_VERIFY_JOB_LEASE has passed
        log.exception("could not publish verification jobs; the sweep will enqueue them later")


def verification_job_run(job_id: str) -> int:
    """Claim the job (queued, or running under a worker whose heartbeat stopped) and check its unchecked
    addresses; returns how many this call checked. A duplicate task finds the job claimed and does nothing."""
    token, now = uuid.uuid4(), timezone.now()
    stale = now - timedelta(seconds=settings.POSTWERK_VERIFY_JOB_LEASE)
    won = (
        VerificationJob.objects.filter(pk=job_id)
        .filter(Q(state=VerificationJob.State.QUEUED) | Q(state=VerificationJob.State.RUNNING, heartbeat_at__lt=stale))
        .update(
            state=VerificationJob.State.RUNNING,
            claim_token=token,
            heartbeat_at=now,
            started_at=Coalesce("started_at", Value(now, output_field=DateTimeField())),
        )
    )
    if not won:
        return 0
    job = VerificationJob.objects.get(pk=job_id)
    pending = list(job.results.filter(checked_at__isnull=True).order_by("position"))
    checked = 0

    def record(batch: list[tuple[int, Answer]]) -> bool:
        nonlocal checked
        now = timezone.now()
        rows = []
        for i, answer in batch:
            row = pending[i]
            for name, value in _row_fields(answer, now).items():
                setattr(row, name, value)
            rows.append(row)
        with transaction.atomic():
            VerificationResult.objects.bulk_update(rows, ["normalized", "result", "reasons", "checks", "checked_at"])
            alive = VerificationJob.objects.filter(pk=job.pk, claim_token=token).update(heartbeat_at=now)
        checked += len(rows)
        return bool(alive)  # another worker took the job over: stop, it carries on

    addresses_verify(
        organization_id=job.organization_id,
        addresses=[row.address for row in pending],
        slot_wait=settings.POSTWERK_VERIFY_SLOT_WAIT,
        threads=settings.POSTWERK_VERIFY_JOB_THREADS,
        record=record,
    )
    if not job.results.filter(checked_at__isnull=True).exists():
        VerificationJob.objects.filter(pk=job.pk, claim_token=token).update(
            state=VerificationJob.State.COMPLETED, finished_at=timezone.now()
        )
    return checked


def verification_sweep() -> dict[str, int]:
    """Re-enqueue jobs whose task was lost or whose worker died; delete jobs past their retention."""
    now = timezone.now()
    lease_ago = now - timedelta(seconds=settings.POSTWERK_VERIFY_JOB_LEASE)
    waiting = Q(state=VerificationJob.State.QUEUED) | Q(state=VerificationJob.State.RUNNING, heartbeat_at__lt=lease_ago)
    not_asked_lately = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=lease_ago)
    rows = due_taken(
        VerificationJob.objects.filter(waiting, not_asked_lately),
        fields=("pk",),
        limit=500,
        lease=lambda ids: VerificationJob.objects.filter(pk__in=ids).update(enqueued_at=now),
        order_by="created_at",
    )
    due = [str(pk) for (pk,) in rows]
    if due:
        _enqueue(due)
    retention = timedelta(seconds=settings.POSTWERK_VERIFY_RESULT_RETENTION)
    expired, _ = VerificationJob.objects.filter(created_at__lt=now - retention).delete()
    idle = slots_forget_idle(older_than=timedelta(days=1))
    return {"enqueued": len(due), "deleted": expired, "idle_slots": idle}


# --- reads ---------------------------------------------------------------------------------------------------------


def verification_job_get(*, organization: Organization, job_id: uuid.UUID) -> VerificationJob | None:
    return VerificationJob.objects.filter(organization=organization, pk=job_id).first()


def verification_job_summary(job: VerificationJob) -> dict[str, object]:
    counts = dict.fromkeys(["deliverable", "undeliverable", "risky", "unknown"], 0)
    for result, n in job.results.exclude(result="").values_list("result").annotate(n=Count("id")):
        counts[result] = n
    checked = sum(counts.values())
    return {
        "id": str(job.pk),
        "status": job.state,
        "total": job.total,
        "checked": checked,
        "progress": round(checked / job.total, 4) if job.total else 1.0,
        "counts": counts,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def verification_job_answers(job: VerificationJob) -> list[Answer]:
    return [
        {
            "address": row.address,
            "normalized": row.normalized or None,
            "result": row.result or None,
            "reasons": row.reasons,
            "checks": row.checks or None,
        }
        for row in job.results.order_by("position")
    ]
