"""Which sending IP a message leaves from: its pool, the IPs' warm-up allowances and what providers asked of them.

The pool is the most specific one assigned (sender domain, then stream, then organization, then the shared default
pool); with no pool at all mail leaves from the host's own address as before, and this costs nothing (the pool set
is cached per process for POSTWERK_THROTTLE_CACHE_SECONDS). Within the pool, IPs take turns; an IP is left out when
it is disabled or its own reputation paused it, and passed over when its provider suspended it, when its rate
towards the provider is spent this minute, or when its warm-up allowance for the provider is used up today. When no
IP of the pool can take the message, a pool set to `overflow` lends it to a warm IP of another pool of the same
organization; otherwise (or when none can) it waits in the queue, not attempted and not failed, until the earliest
moment one of its IPs may send again (the next UTC day for a spent allowance).

Warm-up: day 1 is the IP's warmup_started (UTC); each day's allowance, per receiving provider (mail.providers; other
destinations count together as `other`), is that day's volume of its schedule (its own, or
POSTWERK_WARMUP_SCHEDULE). Past the schedule the IP is warm. Use is counted in IpDailyUse rows for every pool IP (a
warm IP's too, for the dashboard), taken with a conditional UPDATE, so the allowance holds across workers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from mail.providers import Provider
from sending.delivery.shaping import Admission, admit
from sending.models import IpDailyUse, IpPool, ReputationState, SendingIp


@dataclass(frozen=True)
class Ip:
    address: str  # "" is the host's own address (no pool)
    ehlo_name: str = ""
    pool_id: int | None = None
    warmup_started: date | None = None
    volumes: tuple[int, ...] = ()

    def warmup_day(self, today: date) -> int | None:
        """1 on the first day of the warm-up; None once warm (or never warmed up)."""
        if self.warmup_started is None:
            return None
        day = (today - self.warmup_started).days + 1
        return max(1, day) if day <= len(self.volumes) else None

    def allowance(self, today: date) -> int | None:
        """Messages per provider today; None: no limit (warm)."""
        day = self.warmup_day(today)
        return None if day is None else self.volumes[day - 1]


HOST = Ip("")


@dataclass
class Pool:
    id: int
    name: str
    organization_id: int | None
    when_exhausted: str
    ips: list[Ip]
    turn: itertools.count = field(default_factory=itertools.count)

    def in_turn(self, prefer: Ip | None = None) -> list[Ip]:
        """The IPs to try, `prefer` (the IP the caller's session already leaves from) first: changing IPs costs
        a new session, so a delivery loop keeps its IP while it may; loops take turns starting elsewhere."""
        if len(self.ips) < 2:
            return self.ips
        if prefer is not None and prefer in self.ips:
            return [prefer] + [ip for ip in self.ips if ip != prefer]
        start = next(self.turn) % len(self.ips)
        return self.ips[start:] + self.ips[:start]


@dataclass
class _Snapshot:
    expires: float
    by_domain: dict[int, Pool]
    by_stream: dict[tuple[int | None, str], Pool]
    by_organization: dict[int, Pool]
    default: Pool | None
    of_organization: dict[int, list[Pool]]  # every pool an organization's mail may use (for overflow)

    @property
    def empty(self) -> bool:
        return not (self.by_domain or self.by_stream or self.by_organization or self.default)


_lock = threading.Lock()
_snapshot: _Snapshot | None = None


def _load() -> _Snapshot:
    default_volumes = tuple(settings.POSTWERK_WARMUP_SCHEDULE)
    pools: dict[int, Pool] = {}
    rows = IpPool.objects.select_related("domain").order_by("pk")
    for row in rows:
        owner = row.organization_id or (row.domain.organization_id if row.domain else None)
        pools[row.pk] = Pool(row.pk, row.name, owner, row.when_exhausted, [])
    # An IP its own reputation paused (sending.reputation.ip_reputation) is left out like a disabled one.
    ips = SendingIp.objects.filter(enabled=True).exclude(reputation_state=ReputationState.PAUSED)
    for ip in ips.select_related("schedule").order_by("address"):
        volumes = tuple(ip.schedule.volumes) if ip.schedule else default_volumes
        pools[ip.pool_id].ips.append(Ip(ip.address, ip.ehlo_name, ip.pool_id, ip.warmup_started, volumes))
    snap = _Snapshot(time.monotonic() + settings.POSTWERK_THROTTLE_CACHE_SECONDS, {}, {}, {}, None, {})
    for row in rows:
        pool = pools[row.pk]
        if row.is_default:
            snap.default = pool
        elif row.domain_id:
            snap.by_domain[row.domain_id] = pool
        elif row.stream:
            snap.by_stream[(row.organization_id, row.stream)] = pool
        elif row.organization_id:
            snap.by_organization[row.organization_id] = pool
        if pool.organization_id is not None:
            snap.of_organization.setdefault(pool.organization_id, []).append(pool)
    return snap


def _current() -> _Snapshot:
    global _snapshot
    snap = _snapshot
    if snap is None or snap.expires <= time.monotonic():
        snap = _load()
        with _lock:
            _snapshot = snap
    return snap


def pools_forget() -> None:
    """Drop this process's cached pools (tests; other processes see changes within the cache time)."""
    global _snapshot
    with _lock:
        _snapshot = None


def message_stream(message: object) -> str:
    """The message's stream name, when messages have one (streams are their own feature: wired here)."""
    stream = getattr(message, "stream", "") or ""
    return str(getattr(stream, "name", stream))


def pool_for(organization_id: int, domain_id: int | None, stream: str = "") -> Pool | None:
    snap = _current()
    if snap.empty:
        return None
    if domain_id is not None and domain_id in snap.by_domain:
        return snap.by_domain[domain_id]
    if stream:
        found = snap.by_stream.get((organization_id, stream)) or snap.by_stream.get((None, stream))
        if found is not None:
            return found
    return snap.by_organization.get(organization_id) or snap.default


# --- the choice ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The IP a message goes out from, or (ip None) until when it waits and why."""

    ip: Ip | None
    wait_until: datetime | None = None
    why: str = ""
    overflow: bool = False
    admission: Admission | None = None
    counted: tuple[str, str, date, int] | None = None  # (address, provider, day, n) taken from the allowance

    def give_back(self) -> None:
        """The message did not go after all (no connection from this IP): its allowance and rate come back."""
        if self.admission is not None:
            self.admission.refund()
        if self.counted is not None:
            address, provider, day, n = self.counted
            IpDailyUse.objects.filter(address=address, provider=provider, day=day, count__gte=n).update(
                count=F("count") - n
            )


def next_day(now: datetime) -> datetime:
    tomorrow = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime.combine(tomorrow, clock.min, tzinfo=UTC)


def choose(
    *,
    organization_id: int,
    domain_id: int | None,
    stream: str,
    provider: Provider,
    n: int,
    can_connect: Callable[[Ip], bool] | None = None,
    prefer: Ip | None = None,
) -> Choice:
    """Where `n` recipients of one message to one provider leave from now. `can_connect(ip)`: whether a session
    from that IP may be had (its connection limit towards the provider), asked before anything is counted."""
    now = timezone.now()
    pool = pool_for(organization_id, domain_id, stream)
    if pool is None:
        admission = admit("", provider, n, now)
        if admission.ok:
            return Choice(HOST, admission=admission)
        return Choice(None, admission.until, f"{provider.name} asked the host's address to wait")
    choice, waits = _from_pool(pool, provider, n, now, can_connect, warm_only=False, prefer=prefer)
    if choice is not None:
        return choice
    if pool.when_exhausted == IpPool.WhenExhausted.OVERFLOW and pool.organization_id is not None:
        for other in _current().of_organization.get(pool.organization_id, []):
            if other.id == pool.id:
                continue
            found, more = _from_pool(other, provider, n, now, can_connect, warm_only=True, prefer=prefer)
            if found is not None:
                return Choice(found.ip, admission=found.admission, counted=found.counted, overflow=True)
            waits += more
    if not pool.ips:
        waits.append(now + timedelta(seconds=settings.POSTWERK_THROTTLE_SLOT_RETRY))
    until = min(waits) if waits else next_day(now)
    return Choice(None, until, f"no IP of pool {pool.name} may send to {provider.name} now")


def _from_pool(
    pool: Pool,
    provider: Provider,
    n: int,
    now: datetime,
    can_connect: Callable[[Ip], bool] | None,
    *,
    warm_only: bool,
    prefer: Ip | None = None,
) -> tuple[Choice | None, list[datetime]]:
    today = now.astimezone(UTC).date()
    waits: list[datetime] = []
    for ip in pool.in_turn(prefer):
        allowance = ip.allowance(today)
        if warm_only and allowance is not None:
            continue
        if can_connect is not None and not can_connect(ip):
            waits.append(now + timedelta(seconds=settings.POSTWERK_THROTTLE_SLOT_RETRY))
            continue
        admission = admit(ip.address, provider, n, now)
        if not admission.ok:
            if admission.until is not None:
                waits.append(admission.until)
            continue
        if not use_take(ip.address, provider.name, today, n, allowance):
            admission.refund()
            waits.append(next_day(now))
            continue
        return Choice(ip, admission=admission, counted=(ip.address, provider.name, today, n)), waits
    return None, waits


def use_take(address: str, provider: str, day: date, n: int, allowance: int | None) -> bool:
    """Count `n` messages of today's use; False (nothing counted) when that would pass the allowance."""
    for _ in range(2):
        rows = IpDailyUse.objects.filter(address=address, provider=provider, day=day)
        if allowance is not None:
            # A message with more recipients there than a whole day's allowance goes as the day's first.
            rows = rows.filter(count__lte=max(0, allowance - n))
        if rows.update(count=F("count") + n):
            return True
        if IpDailyUse.objects.filter(address=address, provider=provider, day=day).exists():
            return False
        IpDailyUse.objects.bulk_create(
            [IpDailyUse(address=address, provider=provider, day=day, count=0)], ignore_conflicts=True
        )
    return False
