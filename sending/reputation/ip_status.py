"""Each sending IP as operators and organizations see it: pool, warm-up day, today's use against the allowance per
receiving provider, what providers asked of it (slowed, suspended), its blocklist listings, and its own
reputation (bounce and complaint rates of the mail it sent, judged by the platform's thresholds; the state is the
last recompute's, sending.reputation.ip_reputation, so a paused IP shows paused until an operator resumes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from sending.delivery.pools import visible_pools
from sending.delivery.shaping import providers
from sending.models import (
    BlocklistListing,
    IpDailyUse,
    IpPool,
    IpProviderState,
    Recipient,
    SendingIp,
)
from sending.reputation.rates import Numbers, judge, platform_thresholds, window_numbers


@dataclass
class IpStatus:
    address: str
    ehlo_name: str
    pool: str
    pool_id: int
    enabled: bool
    dns_ok: bool | None
    dns_detail: str
    warmup_day: int | None  # None: warm
    warmup_days: int
    allowance: int | None  # per provider today; None: no limit
    used_today: int
    used_by_provider: dict[str, int]
    provider_states: list[dict[str, object]] = field(default_factory=list)
    listings: list[dict[str, object]] = field(default_factory=list)
    reputation: dict[str, object] = field(default_factory=dict)


def ip_numbers(address: str, *, since: datetime) -> Numbers:
    """Rates over the IP's newest outcomes since `since` (at most POSTWERK_REPUTATION_WINDOW of them), like a
    scope's in sending.reputation.rates, read through the partial index recipient_ip_finished."""
    window = Recipient.objects.filter(sending_ip=address, finished_at__gte=since).order_by("-finished_at")[
        : settings.POSTWERK_REPUTATION_WINDOW
    ]
    return window_numbers(window)


def ip_statuses(organization_id: int | None = None, now: datetime | None = None) -> list[IpStatus]:
    """Every sending IP (operators: organization_id None), or those an organization's mail may leave from."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    pools = IpPool.objects.all() if organization_id is None else IpPool.objects.filter(visible_pools(organization_id))
    ips = list(SendingIp.objects.filter(pool__in=pools).select_related("pool", "schedule").order_by("address"))
    addresses = [ip.address for ip in ips]
    use: dict[str, dict[str, int]] = {}
    for row in IpDailyUse.objects.filter(address__in=addresses, day=today).values("address", "provider", "count"):
        use.setdefault(row["address"], {})[row["provider"]] = row["count"]
    states: dict[str, list[dict[str, object]]] = {}
    labels = {p.name: p.label for p in providers().providers}
    for state in IpProviderState.objects.filter(address__in=addresses, until__gt=now).order_by("provider"):
        states.setdefault(state.address, []).append(
            {
                "provider": state.provider,
                "provider_label": labels.get(state.provider, state.provider),
                "action": state.action,
                "rate": state.rate,
                "until": state.until,
                "rule": state.rule,
                "reason": state.reason,
            }
        )
    listings: dict[str, list[dict[str, object]]] = {}
    for listing in BlocklistListing.objects.filter(kind=BlocklistListing.Kind.IP, target__in=addresses, listed=True):
        listings.setdefault(listing.target, []).append(
            {"zone": listing.zone, "answer": listing.answer, "reason": listing.reason, "since": listing.listed_since}
        )
    since = now - timedelta(days=settings.POSTWERK_REPUTATION_WINDOW_DAYS)
    thresholds = platform_thresholds()
    default_volumes = list(settings.POSTWERK_WARMUP_SCHEDULE)
    found = []
    for ip in ips:
        volumes = list(ip.schedule.volumes) if ip.schedule else default_volumes
        day = None
        if ip.warmup_started is not None:
            day = max(1, (today - ip.warmup_started).days + 1)
            if day > len(volumes):
                day = None
        numbers = ip_numbers(ip.address, since=max(since, ip.reputation_since) if ip.reputation_since else since)
        # The state acted on is the last recompute's (a pause stands until an operator resumes the IP); the
        # numbers are today's.
        state, why = ip.reputation_state, ip.reputation_reason or judge(numbers, thresholds)[1]
        by_provider = use.get(ip.address, {})
        found.append(
            IpStatus(
                address=ip.address,
                ehlo_name=ip.ehlo_name,
                pool=ip.pool.name,
                pool_id=ip.pool_id,
                enabled=ip.enabled,
                dns_ok=ip.dns_ok,
                dns_detail=ip.dns_detail,
                warmup_day=day,
                warmup_days=len(volumes),
                allowance=volumes[day - 1] if day else None,
                used_today=sum(by_provider.values()),
                used_by_provider=dict(sorted(by_provider.items())),
                provider_states=states.get(ip.address, []),
                listings=listings.get(ip.address, []),
                reputation={
                    "state": state,
                    "why": why,
                    "changed_at": ip.reputation_changed_at,
                    "deliveries": numbers.deliveries,
                    "hard_bounces": numbers.hard_bounces,
                    "complaints": numbers.complaints,
                    "bounce_rate": numbers.bounce_rate,
                    "complaint_rate": numbers.complaint_rate,
                },
            )
        )
    return found


def used_total_today(address: str) -> int:
    today = timezone.now().astimezone(UTC).date()
    return IpDailyUse.objects.filter(address=address, day=today).aggregate(n=Sum("count"))["n"] or 0
