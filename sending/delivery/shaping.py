"""Provider-aware shaping per sending IP: which provider a destination belongs to, the limits to keep towards it
from each IP, and what its replies make us do to that IP.

The data is mail/providers.toml (or POSTWERK_PROVIDERS_FILE), re-read when the file changes. A reply that matches a
provider's rule acts on the (IP, provider) pair only, never on the destination as a whole or on other IPs:
- `slow`: at most `rate` messages a minute from that IP to that provider until the period ends (a fixed window
  in a DestinationState row keyed `ip:<address>:<provider>`, the same counter the destination throttle uses);
- `suspend`: nothing from that IP to that provider until the period ends; an `ip.suspended` event goes to the
  organizations using the IP. Other IPs of the pool, an overflow pool, or the queue take its mail.
The recipient whose reply triggered it is deferred, not bounced, even on a 5xx: the refusal was about our IP.

States are IpProviderState rows (address "" is the host's own address, used when no pool applies); each process
keeps them for POSTWERK_THROTTLE_CACHE_SECONDS and sees its own changes at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from mail.providers import Provider, Providers, ReplyRule, file_stamp, load
from mail.smtp_client import Reply
from sending.delivery.pools import organizations_using
from sending.delivery.throttling import tokens_refund, tokens_take
from sending.models import Event, EventType, IpProviderState
from sending.states import organization_events

log = logging.getLogger(__name__)

_lock = threading.Lock()
_providers: tuple[tuple[str, float], Providers] | None = None


def providers() -> Providers:
    """The providers in force, re-read when the file (its path or its modification time) changes."""
    global _providers
    path = settings.POSTWERK_PROVIDERS_FILE
    stamp = file_stamp(path)
    cached = _providers
    if cached is not None and cached[0] == stamp:
        return cached[1]
    data = load(path or None)
    with _lock:
        _providers = (stamp, data)
        _identified.clear()
    return data


_identified: dict[tuple[str, ...], Provider] = {}


def provider_for(mx_hosts: list[str]) -> Provider:
    """The destination's provider (cached per MX host list: a route is looked up once per delivery loop)."""
    key = tuple(mx_hosts)
    data = providers()
    found = _identified.get(key)
    if found is None:
        found = data.identify(list(mx_hosts))
        if len(_identified) > 10_000:
            _identified.clear()
        _identified[key] = found
    return found


# --- what providers asked of our IPs ------------------------------------------------------------------------


@dataclass(frozen=True)
class IpState:
    action: str
    until: datetime
    rate: int | None
    rule: str


@dataclass
class _States:
    expires: float
    by_pair: dict[tuple[str, str], IpState]


_states: _States | None = None


def _current() -> dict[tuple[str, str], IpState]:
    global _states
    snap = _states
    if snap is None or snap.expires <= time.monotonic():
        rows = IpProviderState.objects.filter(until__gt=timezone.now()).values_list(
            "address", "provider", "action", "until", "rate", "rule"
        )
        snap = _States(
            expires=time.monotonic() + settings.POSTWERK_THROTTLE_CACHE_SECONDS,
            by_pair={(a, p): IpState(action, until, rate, rule) for a, p, action, until, rate, rule in rows},
        )
        with _lock:
            _states = snap
    return snap.by_pair


def states_forget() -> None:
    """Drop this process's cached states and providers (tests; other processes refresh within the cache time)."""
    global _states, _providers
    with _lock:
        _states, _providers = None, None
        _identified.clear()


def state_of(address: str, provider: str, now: datetime) -> IpState | None:
    state = _current().get((address, provider))
    return state if state is not None and state.until > now else None


@dataclass(frozen=True)
class Admission:
    """May one IP send `n` messages to a provider now? If not, `until` says when it may."""

    ok: bool
    until: datetime | None = None
    window: datetime | None = None  # the rate window taken from, for a refund
    key: str = ""
    count: int = 0

    def refund(self) -> None:
        if self.ok and self.window is not None and self.count:
            tokens_refund(self.key, self.window, self.count)


def rate_key(address: str, provider: str) -> str:
    return f"ip:{address or 'default'}:{provider}"


def admit(address: str, provider: Provider, n: int, now: datetime) -> Admission:
    """The provider's view of one IP: suspended, slowed (its rule's rate), or within the provider's own per-IP
    rate (pool IPs only: the host's own address keeps the destination throttles it always had)."""
    state = state_of(address, provider.name, now)
    if state is not None and state.action == IpProviderState.Action.SUSPEND:
        return Admission(False, state.until)
    limit = state.rate if state is not None else (provider.max_messages_per_minute if address else None)
    if not limit:
        return Admission(True)
    key = rate_key(address, provider.name)
    granted, start = tokens_take(key, limit, n, now)
    if granted < n:
        if granted:
            tokens_refund(key, start, granted)
            return Admission(False, now + timedelta(seconds=1))
        return Admission(False, start)
    return Admission(True, window=start, key=key, count=n)


def reply_rule(provider: Provider, reply: Reply) -> ReplyRule | None:
    if reply.success or not provider.rules:
        return None
    return provider.rule_for(reply.code, reply.enhanced, reply.text)


def reply_acted_on(
    address: str, provider: Provider, rule: ReplyRule, reply: Reply, now: datetime | None = None
) -> bool:
    """Apply the rule a provider's reply matched to (address, provider). Returns True when the state is new (not
    already in force), which is when an event goes out."""
    now = now or timezone.now()
    until = now + timedelta(seconds=rule.duration)
    current = state_of(address, provider.name, now)
    fresh = current is None or current.action != rule.action
    if rule.action == IpProviderState.Action.SLOW and current is not None and current.action == "suspend":
        return False  # a suspension stands; a slow-down inside it changes nothing
    IpProviderState.objects.update_or_create(
        address=address,
        provider=provider.name,
        defaults={
            "action": rule.action,
            "until": until,
            "rate": rule.rate,
            "rule": rule.name,
            "reason": str(reply)[:2000],
            "updated_at": now,
        },
    )
    snap = _states
    if snap is not None:  # this process acts on it at once; the others within the cache time
        snap.by_pair[(address, provider.name)] = IpState(rule.action, until, rule.rate, rule.name)
    log.warning(
        "%s: %s from %s to %s until %s (%s)",
        rule.name,
        rule.action,
        address or "the default address",
        provider.name,
        until.isoformat(),
        reply,
    )
    if fresh:
        event = EventType.IP_SUSPENDED if rule.action == IpProviderState.Action.SUSPEND else EventType.IP_SLOWED
        details = {
            "address": address,
            "provider": provider.name,
            "provider_label": provider.label,
            "rule": rule.name,
            "action": rule.action,
            "rate": rule.rate,
            "until": until.isoformat(),
            "reply": {"code": reply.code, "enhanced": reply.enhanced, "text": reply.text[:1000]},
        }
        organization_events(
            Event(organization_id=org_id, type=event, created_at=now, details=details)
            for org_id in organizations_using(address)
        )
    return fresh
