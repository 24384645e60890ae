"""Reputation: bounce and complaint rates per sending scope, and the warning / paused states they lead to.

A scope is the organization, one of its sender domains, API keys or SMTP credentials. Each one's rates are
computed over its last POSTWERK_REPUTATION_WINDOW outcomes or POSTWERK_REPUTATION_WINDOW_DAYS, whichever is
smaller (and no further back than a resume), and judged only from POSTWERK_REPUTATION_MIN_DELIVERIES outcomes
on, so a handful of early bounces cannot pause anyone. Bounce rate = hard bounces / (delivered + bounced);
complaint rate = complaints / delivered. Thresholds default to Amazon SES's (5% / 10% bounces, 0.1% / 0.5%
complaints); an organization may set stricter ones on its own keys and credentials, a circuit breaker for one
misbehaving application. A paused scope stays paused until a person resumes it.

Computation runs from beat (`reputation_recompute`), never on the send path; submission reads only the cached
set of paused scopes (`paused_scopes`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.audit import audit_record, diff
from accounts.models import ApiKey, Organization, SmtpCredential
from mail.errors import PostwerkError
from sending.models import (
    Domain,
    Event,
    EventType,
    Recipient,
    Reputation,
    ReputationScope,
    ReputationSnapshot,
    ReputationState,
    Stream,
)
from sending.states import organization_event

Scope = ReputationScope
State = ReputationState
THRESHOLD_FIELDS = ("bounce_warning", "bounce_pause", "complaint_warning", "complaint_pause")
# Only keys and credentials carry an organization's own (stricter) thresholds: the organization and domain
# scopes protect the platform's shared IPs, so only operators change theirs.
# A message stream is one too (#23): a broadcast stream's complaint rate may pause it while transactional mail goes on.
BREAKER_SCOPES = (Scope.API_KEY, Scope.SMTP_CREDENTIAL, Scope.STREAM)


@dataclass(frozen=True)
class Thresholds:
    bounce_warning: float
    bounce_pause: float
    complaint_warning: float
    complaint_pause: float


@dataclass(frozen=True)
class Numbers:
    deliveries: int  # delivered + bounced in the window
    hard_bounces: int
    complaints: int
    bounce_rate: float
    complaint_rate: float


class ThresholdError(PostwerkError, ValueError):
    """A threshold an organization may not set; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ResumeNotAllowed(PostwerkError, PermissionError):
    pass


def platform_thresholds() -> Thresholds:
    values = settings.POSTWERK_REPUTATION_THRESHOLDS
    return Thresholds(**{name: float(values[name]) for name in THRESHOLD_FIELDS})


def thresholds_for(reputation: Reputation) -> Thresholds:
    """The thresholds in force for a scope: its own where set, the platform's otherwise."""
    platform = platform_thresholds()
    return Thresholds(
        **{
            name: getattr(reputation, name) if getattr(reputation, name) is not None else getattr(platform, name)
            for name in THRESHOLD_FIELDS
        }
    )


# --- scopes -------------------------------------------------------------------------------------------------


def _scope_filter(scope: str, scope_id: int) -> Q:
    return {
        Scope.ORGANIZATION: Q(),
        Scope.DOMAIN: Q(message__domain_id=scope_id),
        Scope.API_KEY: Q(message__api_key_id=scope_id),
        Scope.SMTP_CREDENTIAL: Q(message__smtp_credential_id=scope_id),
        Scope.STREAM: Q(message__stream_id=scope_id),
    }[scope]


def _scope_keys(organization_id: int) -> list[tuple[str, int]]:
    keys = [(Scope.ORGANIZATION, organization_id)]
    keys += [
        (Scope.DOMAIN, pk) for pk in Domain.objects.filter(organization_id=organization_id).values_list("pk", flat=True)
    ]
    keys += [
        (Scope.API_KEY, pk)
        for pk in ApiKey.objects.filter(organization_id=organization_id, revoked_at__isnull=True).values_list(
            "pk", flat=True
        )
    ]
    keys += [
        (Scope.SMTP_CREDENTIAL, pk)
        for pk in SmtpCredential.objects.filter(organization_id=organization_id, revoked_at__isnull=True).values_list(
            "pk", flat=True
        )
    ]
    keys += [
        (Scope.STREAM, pk) for pk in Stream.objects.filter(organization_id=organization_id).values_list("pk", flat=True)
    ]
    return keys


def reputation_for_scope(organization_id: int, scope: str, scope_id: int) -> Reputation:
    reputation, _ = Reputation.objects.get_or_create(organization_id=organization_id, scope=scope, scope_id=scope_id)
    return reputation


def reputations_for(organization_id: int) -> list[Reputation]:
    """Every scope of the organization with its Reputation row (created on demand), each with `scope_name`."""
    Reputation.objects.bulk_create(
        [Reputation(organization_id=organization_id, scope=s, scope_id=i) for s, i in _scope_keys(organization_id)],
        ignore_conflicts=True,
    )
    rows = list(Reputation.objects.filter(organization_id=organization_id).order_by("scope", "scope_id"))
    _attach_names(organization_id, rows)
    order = {s: n for n, s in enumerate(Scope.values)}
    rows.sort(key=lambda r: (order[r.scope], r.scope_id))
    return rows


def _attach_names(organization_id: int, rows: list[Reputation]) -> None:
    names: dict[tuple[str, int], str] = {}
    org = Organization.objects.filter(pk=organization_id).values_list("name", flat=True).first()
    names[(Scope.ORGANIZATION, organization_id)] = org or ""
    for pk, name in Domain.objects.filter(organization_id=organization_id).values_list("pk", "name"):
        names[(Scope.DOMAIN, pk)] = name
    for pk, name in ApiKey.objects.filter(organization_id=organization_id).values_list("pk", "name"):
        names[(Scope.API_KEY, pk)] = name
    for pk, name in SmtpCredential.objects.filter(organization_id=organization_id).values_list("pk", "username"):
        names[(Scope.SMTP_CREDENTIAL, pk)] = name
    for pk, name in Stream.objects.filter(organization_id=organization_id).values_list("pk", "name"):
        names[(Scope.STREAM, pk)] = f"stream {name}"
    for row in rows:
        row.scope_name = names.get((row.scope, row.scope_id), "")  # type: ignore[attr-defined]


# --- rates --------------------------------------------------------------------------------------------------


def window_since(reputation: Reputation, now: datetime) -> datetime:
    since = now - timedelta(days=settings.POSTWERK_REPUTATION_WINDOW_DAYS)
    if reputation.window_start and reputation.window_start > since:
        since = reputation.window_start
    return since


def scope_numbers(organization_id: int, scope: str, scope_id: int, *, since: datetime) -> Numbers:
    """Exact rates over the scope's newest outcomes since `since`, at most POSTWERK_REPUTATION_WINDOW of them.

    One query: the newest N outcomes (the partial index recipient_org_finished, read backwards) aggregated in a
    subquery."""
    window = (
        Recipient.objects.filter(organization_id=organization_id, finished_at__gte=since)
        .filter(_scope_filter(scope, scope_id))
        .order_by("-finished_at")[: settings.POSTWERK_REPUTATION_WINDOW]
    )
    return window_numbers(window)


def window_numbers(window: QuerySet[Recipient]) -> Numbers:
    """Hard-bounce and complaint rates of a window of finished recipients (a sliced, ordered queryset), in one
    aggregate query. Complaints are counted against delivered mail only."""
    totals = window.aggregate(
        total=Count("pk"),
        hard=Count("pk", filter=Q(bounce_kind="hard")),
        bounced=Count("pk", filter=~Q(bounce_kind="")),
        complaints=Count("pk", filter=Q(complained_at__isnull=False)),
    )
    total, hard, complaints = totals["total"] or 0, totals["hard"] or 0, totals["complaints"] or 0
    delivered = total - (totals["bounced"] or 0)
    return Numbers(
        deliveries=total,
        hard_bounces=hard,
        complaints=complaints,
        bounce_rate=hard / total if total else 0.0,
        complaint_rate=complaints / delivered if delivered else 0.0,
    )


def judge(numbers: Numbers, thresholds: Thresholds) -> tuple[str, str]:
    """The state these numbers call for, and why. Thresholds are inclusive: 5.0% bounces is a warning."""
    if numbers.deliveries < settings.POSTWERK_REPUTATION_MIN_DELIVERIES:
        return State.OK, f"{numbers.deliveries} deliveries: too few to judge"
    for state, bounce, complaint in (
        (State.PAUSED, thresholds.bounce_pause, thresholds.complaint_pause),
        (State.WARNING, thresholds.bounce_warning, thresholds.complaint_warning),
    ):
        if numbers.bounce_rate >= bounce:
            return state, f"bounce rate {numbers.bounce_rate:.2%} reached {bounce:.2%}"
        if numbers.complaint_rate >= complaint:
            return state, f"complaint rate {numbers.complaint_rate:.3%} reached {complaint:.3%}"
    return State.OK, "rates below the thresholds"


_EVENT_FOR_STATE = {
    State.OK: EventType.REPUTATION_OK,
    State.WARNING: EventType.REPUTATION_WARNING,
    State.PAUSED: EventType.REPUTATION_PAUSED,
}


def reputation_recompute(organization_id: int, now: datetime | None = None) -> list[Reputation]:
    """Recompute every scope of the organization; returns the ones whose state changed."""
    now = now or timezone.now()
    changed = []
    for reputation in reputations_for(organization_id):
        if _recompute_one(reputation, now):
            changed.append(reputation)
    return changed


def reputation_recompute_scope(reputation: Reputation, now: datetime | None = None) -> Reputation:
    _recompute_one(reputation, now or timezone.now())
    return reputation


def _recompute_one(reputation: Reputation, now: datetime) -> bool:
    numbers = scope_numbers(
        reputation.organization_id, reputation.scope, reputation.scope_id, since=window_since(reputation, now)
    )
    thresholds = thresholds_for(reputation)
    wanted, why = judge(numbers, thresholds)
    with transaction.atomic():
        current = Reputation.objects.select_for_update().get(pk=reputation.pk)
        if current.window_start != reputation.window_start:
            return False  # resumed while we counted: these numbers are from before the resume
        previous = current.state
        # Paused is sticky: only a person resumes (the held mail would otherwise flow back on its own).
        new_state = previous if previous == State.PAUSED else wanted
        for name, value in asdict(numbers).items():
            setattr(current, name, value)
        current.computed_at = now
        fields = [*asdict(numbers), "computed_at"]
        if new_state != previous:
            current.state, current.changed_at, current.reason = new_state, now, why
            fields += ["state", "changed_at", "reason"]
        current.save(update_fields=fields)
        if new_state != previous:
            _record_change(current, previous, actor="", reason=why, event_type=_EVENT_FOR_STATE[new_state], now=now)
    _copy(current, reputation)
    if new_state != previous and State.PAUSED in (new_state, previous):
        paused_scopes_clear()
    return new_state != previous


def _copy(source: Reputation, target: Reputation) -> None:
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def _record_change(
    reputation: Reputation, previous: str, *, actor: str, reason: str, event_type: str, now: datetime
) -> None:
    ReputationSnapshot.objects.create(
        reputation=reputation,
        organization_id=reputation.organization_id,
        state=reputation.state,
        previous_state=previous,
        deliveries=reputation.deliveries,
        hard_bounces=reputation.hard_bounces,
        complaints=reputation.complaints,
        bounce_rate=reputation.bounce_rate,
        complaint_rate=reputation.complaint_rate,
        reason=reason,
        actor=actor,
        created_at=now,
    )
    organization_event(
        reputation.organization_id,
        event_type,
        event_details(reputation, previous, reason=reason, actor=actor),
        domain_id=reputation.scope_id if reputation.scope == Scope.DOMAIN else None,
        created_at=now,
    )


def event_details(reputation: Reputation, previous: str, *, reason: str, actor: str) -> dict:
    return {
        "scope": reputation.scope,
        "scope_id": reputation.scope_id,
        "state": reputation.state,
        "previous_state": previous,
        "deliveries": reputation.deliveries,
        "hard_bounces": reputation.hard_bounces,
        "complaints": reputation.complaints,
        "bounce_rate": reputation.bounce_rate,
        "complaint_rate": reputation.complaint_rate,
        "thresholds": asdict(thresholds_for(reputation)),
        "reason": reason,
        "actor": actor,
    }


def organizations_with_recent_outcomes(since: datetime) -> list[int]:
    """Organizations with a delivery outcome or a complaint since `since`: the only ones worth recomputing.
    One index probe per organization (recipient_org_finished, event_org_created)."""
    outcomes = Recipient.objects.filter(organization_id=OuterRef("pk"), finished_at__gte=since)
    complaints = Event.objects.filter(organization_id=OuterRef("pk"), created_at__gte=since, type=EventType.COMPLAINED)
    return list(Organization.objects.filter(Q(Exists(outcomes)) | Q(Exists(complaints))).values_list("pk", flat=True))


# --- people: pause, resume, thresholds ------------------------------------------------------------------------


def paused_by_own_breaker(reputation: Reputation) -> bool:
    """Paused automatically by the organization's own stricter thresholds on a key or credential, at rates the
    platform's thresholds would not have paused: the organization may resume that itself."""
    if reputation.state != State.PAUSED or reputation.scope not in BREAKER_SCOPES:
        return False
    pause = reputation.history.filter(state=State.PAUSED).order_by("-created_at", "-pk").first()
    if pause is None or pause.actor:
        return False  # paused by an operator
    platform = platform_thresholds()
    return pause.bounce_rate < platform.bounce_pause and pause.complaint_rate < platform.complaint_pause


def reputation_resume(
    reputation: Reputation, *, actor: str, reason: str, staff: bool, now: datetime | None = None
) -> Reputation:
    """Back to `ok`, counting only outcomes from now on (window_start), so old history cannot pause it again at
    once. `staff=False` (an organization) may resume only its own breakers; no default, so no caller gets an
    operator's power by omission. Raises ResumeNotAllowed."""
    now = now or timezone.now()
    if not staff and not paused_by_own_breaker(reputation):
        raise ResumeNotAllowed(
            "This scope was paused by the platform's thresholds or by an operator; only an operator can resume it."
        )
    with transaction.atomic():
        current = Reputation.objects.select_for_update().get(pk=reputation.pk)
        previous = current.state
        current.state, current.changed_at, current.window_start = State.OK, now, now
        current.resumed_at, current.resumed_by, current.resume_reason = now, actor[:200], reason
        current.reason = f"resumed by {actor}: {reason}"
        current.deliveries = current.hard_bounces = current.complaints = 0
        current.bounce_rate = current.complaint_rate = 0.0
        current.save()
        _record_change(current, previous, actor=actor, reason=reason, event_type=EventType.REPUTATION_RESUMED, now=now)
        audit_record(
            organization=current.organization_id,
            action="reputation.resumed",
            target=current,
            target_label=f"{current.scope} {current.scope_id}",
            changes={"state": [previous, current.state], "reason": reason},
        )
    _copy(current, reputation)
    paused_scopes_clear()
    return reputation


def reputation_pause(reputation: Reputation, *, actor: str, reason: str, now: datetime | None = None) -> Reputation:
    """An operator pauses a scope by hand (it stays paused until resumed)."""
    now = now or timezone.now()
    with transaction.atomic():
        current = Reputation.objects.select_for_update().get(pk=reputation.pk)
        previous = current.state
        current.state, current.changed_at, current.reason = State.PAUSED, now, f"paused by {actor}: {reason}"
        current.save(update_fields=["state", "changed_at", "reason"])
        _record_change(current, previous, actor=actor, reason=reason, event_type=EventType.REPUTATION_PAUSED, now=now)
        audit_record(
            organization=current.organization_id,
            action="reputation.paused",
            target=current,
            target_label=f"{current.scope} {current.scope_id}",
            changes={"state": [previous, current.state], "reason": reason},
        )
    _copy(current, reputation)
    paused_scopes_clear()
    return reputation


def reputation_thresholds_set(reputation: Reputation, *, values: dict[str, float | None], staff: bool) -> Reputation:
    """Set (a float) or clear (None) threshold overrides. An organization (staff=False) may set them only on its
    keys and credentials and only stricter (lower) than the platform's. Raises ThresholdError."""
    if not staff and reputation.scope not in BREAKER_SCOPES:
        raise ThresholdError("scope", "Only API key and SMTP credential scopes take an organization's thresholds.")
    platform = platform_thresholds()
    for name, value in values.items():
        if name not in THRESHOLD_FIELDS:
            raise ThresholdError(name, f"Unknown threshold; one of {', '.join(THRESHOLD_FIELDS)}.")
        if value is None:
            continue
        if not 0 < value <= 1:
            raise ThresholdError(name, "A rate between 0 (exclusive) and 1, e.g. 0.02 for 2%.")
        if not staff and value > getattr(platform, name):
            raise ThresholdError(name, f"May only be stricter than the platform's {getattr(platform, name)}.")
    before = {name: getattr(reputation, name) for name in THRESHOLD_FIELDS}
    for name, value in values.items():
        setattr(reputation, name, value)
    in_force = thresholds_for(reputation)
    for kind in ("bounce", "complaint"):
        if getattr(in_force, f"{kind}_warning") > getattr(in_force, f"{kind}_pause"):
            raise ThresholdError(
                f"{kind}_warning", f"Must not be above {kind}_pause ({getattr(in_force, f'{kind}_pause')})."
            )
    with transaction.atomic():
        reputation.save(update_fields=list(THRESHOLD_FIELDS))
        changes = diff(before, {name: getattr(reputation, name) for name in THRESHOLD_FIELDS})
        if changes:
            audit_record(
                organization=reputation.organization_id,
                action="reputation.thresholds_changed",
                target=reputation,
                target_label=f"{reputation.scope} {reputation.scope_id}",
                changes=changes,
            )
    return reputation


# --- what submission reads ----------------------------------------------------------------------------------

_paused_lock = threading.Lock()
_paused: dict[str, object] = {"loaded": -1e18, "scopes": {}}


def paused_scopes(organization_id: int) -> frozenset[tuple[str, int]]:
    """The organization's paused (scope, scope id) pairs. One query for every organization at most every
    POSTWERK_PAUSED_CACHE_SECONDS per process: submission pays a dict lookup, not a query, per message."""
    if time.monotonic() - float(_paused["loaded"]) > settings.POSTWERK_PAUSED_CACHE_SECONDS:  # type: ignore[arg-type]
        with _paused_lock:
            if time.monotonic() - float(_paused["loaded"]) > settings.POSTWERK_PAUSED_CACHE_SECONDS:  # type: ignore[arg-type]
                scopes: dict[int, set[tuple[str, int]]] = {}
                for org, scope, scope_id in Reputation.objects.filter(state=State.PAUSED).values_list(
                    "organization_id", "scope", "scope_id"
                ):
                    scopes.setdefault(org, set()).add((scope, scope_id))
                _paused["scopes"] = {org: frozenset(s) for org, s in scopes.items()}
                _paused["loaded"] = time.monotonic()
    return _paused["scopes"].get(organization_id, frozenset())  # type: ignore[union-attr]


def paused_scopes_fresh(organization_id: int) -> frozenset[tuple[str, int]]:
    """The same, straight from the database (for releases, which must not act on a stale list)."""
    return frozenset(
        Reputation.objects.filter(organization_id=organization_id, state=State.PAUSED).values_list("scope", "scope_id")
    )


def paused_scopes_clear() -> None:
    """Forget this process's cached list (after a pause or resume here; other processes catch up within the TTL)."""
    _paused["loaded"] = -1e18
