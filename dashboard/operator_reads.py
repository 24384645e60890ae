"""Platform-wide reads for the operators' pages (staff only, so not scoped to one organization): destinations
that are backed off or throttled right now, and the blocklist listings of the sending IPs and domains."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q

from sending.delivery.throttling import Rule, rules_effective
from sending.models import BlocklistListing, DeliverySlot, DestinationState, Recipient, RecipientState
from sending.reputation.blocklists import sending_ips


@dataclass
class Destination:
    key: str  # a recipient domain, a domain rule's pattern, or "mx:" and an MX rule's pattern
    rule: Rule | None = None
    backoff_until: datetime | None = None
    backoff_reason: str = ""
    connections: int = 0  # DeliverySlot leases held now
    lease_until: datetime | None = None
    minute_count: int = 0  # messages in the current per-minute window
    waiting: int = 0  # queued recipients postponed until later (not attempted: no `deferred` event)
    next_at: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def throttled(self) -> bool:
        rule = self.rule
        return bool(
            rule
            and (
                (rule.max_connections and self.connections >= rule.max_connections)
                or (rule.max_messages_per_minute and self.minute_count >= rule.max_messages_per_minute)
            )
        )


def throttled_destinations(now: datetime, *, limit: int = 100) -> list[Destination]:
    """Every destination that is backed off, holds connection leases, has used part of its per-minute budget,
    or has mail postponed until later; backed off first, then the busiest. A handful of grouped queries."""
    found: dict[str, Destination] = {}

    def get(key: str) -> Destination:
        return found.setdefault(key, Destination(key))

    window = timedelta(seconds=settings.POSTWERK_THROTTLE_WINDOW)
    states = DestinationState.objects.filter(
        Q(backoff_until__gt=now) | Q(window_start__gt=now - window, window_count__gt=0)
    ).order_by("-backoff_until")[:limit]
    for row in states:
        dest = get(row.key)
        if row.backoff_until and row.backoff_until > now:
            dest.backoff_until, dest.backoff_reason = row.backoff_until, row.backoff_reason
        if row.window_start and row.window_start > now - window:
            dest.minute_count = row.window_count
    leases = (
        DeliverySlot.objects.exclude(holder="")
        .filter(expires_at__gt=now)
        .values("key")
        .annotate(n=Count("id"), until=Max("expires_at"))
        .order_by("-n")[:limit]
    )
    for row in leases:
        dest = get(row["key"])
        dest.connections, dest.lease_until = row["n"], row["until"]
    # Throttled mail goes back to `queued` with next_attempt_at in the future (the recipient_due index).
    postponed = (
        Recipient.objects.filter(state=RecipientState.QUEUED, next_attempt_at__gt=now)
        .values("domain")
        .annotate(n=Count("id"), next_at=Min("next_attempt_at"))
        .order_by("-n")[:limit]
    )
    for row in postponed:
        dest = get(row["domain"])
        dest.waiting, dest.next_at = row["n"], row["next_at"]
    rules = {rule.key: rule for rule in rules_effective()}
    for dest in found.values():
        dest.rule = rules.get(dest.key)
    return sorted(found.values(), key=lambda d: (d.backoff_until is None, -d.waiting, -d.connections, d.key))[:limit]


@dataclass(frozen=True)
class BlocklistOverview:
    ips: list[BlocklistListing]  # every configured sending IP on every configured zone
    domains_listed: list[BlocklistListing]  # domains listed now, with their organization
    domains_checked: int
    errors: int


def blocklist_overview() -> BlocklistOverview:
    ips = list(
        BlocklistListing.objects.filter(
            kind=BlocklistListing.Kind.IP, target__in=sending_ips(), zone__in=settings.POSTWERK_DNSBL_ZONES
        ).order_by("-listed", "target", "zone")
    )
    domains = BlocklistListing.objects.filter(
        kind=BlocklistListing.Kind.DOMAIN, zone__in=settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES
    )
    listed = list(
        domains.filter(listed=True).select_related("domain__organization").order_by("-listed_since", "target")[:200]
    )
    errors = sum(1 for row in ips if row.error) + domains.exclude(error="").count()
    return BlocklistOverview(ips, listed, domains.values("target").distinct().count(), errors)
