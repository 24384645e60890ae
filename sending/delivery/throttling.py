"""Per-destination traffic shaping: connection, per-connection and per-minute limits, and back-off.

A destination is a recipient domain. A rule gives it limits: rules match the domain (`gmail.com`, or `*.x` for x
and its subdomains) or a suffix of its MX hosts (`*.google.com`: every domain Google hosts shares one budget).
The most specific rule wins: an exact domain, then the longest domain wildcard, then the longest MX suffix. The
built-in rules are POSTWERK_THROTTLE_RULES; a ThrottleRule row of the same pattern and match replaces one, and a
disabled row switches it off. Each process keeps the rule set, and the keys currently backed off, for
POSTWERK_THROTTLE_CACHE_SECONDS, so mail to an unthrottled destination costs no query here at all.

Everything shared lives in the database, so limits hold for every worker process on every host:
- connections: DeliverySlot leases (delivery_slots.py), one per open session;
- messages per minute: a fixed window in the rule's DestinationState row, taken with a conditional UPDATE
  (POSTWERK_THROTTLE_WINDOW seconds long; it exists so tests can shrink a minute). Fixed windows can let up to
  twice the limit through around a window boundary, which receivers' own per-minute counters tolerate;
- back-off: a 421, or a 4xx with enhanced status 4.7.x or "too many / rate limit" wording, sets backoff_until on
  the domain's row (and the rule's), POSTWERK_THROTTLE_BACKOFF seconds, doubled when the destination asks again
  soon after the last back-off ended, up to POSTWERK_THROTTLE_BACKOFF_MAX. Rows are keyed by the recipient domain,
  by a domain rule's pattern, or by `mx:` and an MX rule's pattern. A row's updated_at is when its back-off last
  changed (the window counters leave it alone), which is how the next back-off knows how long the last one was.

Mail that may not go now is not attempted: it goes back to `queued` with next_attempt_at set to when it may go
(no attempt counted, no `deferred` event), and a delivery task for the destination is scheduled for that moment;
the sweep enqueues it too once due, so the database stays the truth if that task is lost.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from config.celery import app as celery_app
from mail.smtp_client import Reply
from sending.delivery.queueing import DELIVER_TASK, lane_queue, task_kwargs
from sending.delivery.slots import Slot, slot_release, slot_renew, slot_take
from sending.models import DestinationState, Recipient, RecipientState, ThrottleRule
from sending.states import claims_given_back

log = logging.getLogger(__name__)


# --- rules ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    pattern: str  # normalised: lower case, no trailing dot; MX rules always `*.suffix`
    match: str  # ThrottleRule.Match: domain or mx
    max_connections: int | None = None
    max_messages_per_connection: int | None = None
    max_messages_per_minute: int | None = None

    @property
    def key(self) -> str:
        """The DeliverySlot / DestinationState key of the rule's shared budget."""
        return f"mx:{self.pattern}" if self.match == ThrottleRule.Match.MX else self.pattern

    @property
    def limited(self) -> bool:
        return any((self.max_connections, self.max_messages_per_connection, self.max_messages_per_minute))


def pattern_normalise(pattern: str, match: str) -> str:
    pattern = pattern.strip().lower().rstrip(".")
    if match == ThrottleRule.Match.MX:
        return "*." + pattern.removeprefix("*.").lstrip(".")
    return pattern


def _covers(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        suffix = pattern[2:]
        return name == suffix or name.endswith("." + suffix)
    return name == pattern


def _positive(value: object) -> int | None:
    return int(value) if value else None  # type: ignore[call-overload]


def _builtin_rules() -> list[Rule]:
    rules = []
    for item in settings.POSTWERK_THROTTLE_RULES:
        match = item.get("match", ThrottleRule.Match.DOMAIN)
        rules.append(
            Rule(
                pattern=pattern_normalise(item["pattern"], match),
                match=match,
                max_connections=_positive(item.get("max_connections")),
                max_messages_per_connection=_positive(item.get("max_messages_per_connection")),
                max_messages_per_minute=_positive(item.get("max_messages_per_minute")),
            )
        )
    return rules


def rules_effective() -> list[Rule]:
    """The built-in rules with the database's rules applied over them (same pattern and match: replaced)."""
    rules = {(r.match, r.pattern): r for r in _builtin_rules()}
    for row in ThrottleRule.objects.all():
        pattern = pattern_normalise(row.pattern, row.match)
        if not row.enabled:
            rules.pop((row.match, pattern), None)
            continue
        rules[(row.match, pattern)] = Rule(
            pattern=pattern,
            match=row.match,
            max_connections=row.max_connections or None,
            max_messages_per_connection=row.max_messages_per_connection or None,
            max_messages_per_minute=row.max_messages_per_minute or None,
        )
    return [r for r in rules.values() if r.limited]


@dataclass
class _Snapshot:
    expires: float
    exact: dict[str, Rule]
    wildcard: list[Rule]  # domain rules `*.x`, longest first
    mx: list[Rule]  # longest first
    backoffs: dict[str, datetime] = field(default_factory=dict)

    def rule_for(self, domain: str, mx_hosts: list[str]) -> Rule | None:
        if domain in self.exact:
            return self.exact[domain]
        for rule in self.wildcard:
            if _covers(rule.pattern, domain):
                return rule
        for host in mx_hosts:  # best preference first
            for rule in self.mx:
                if _covers(rule.pattern, host):
                    return rule
        return None


_lock = threading.Lock()
_snapshot: _Snapshot | None = None


def _load() -> _Snapshot:
    rules = rules_effective()
    by_length = sorted(rules, key=lambda r: -len(r.pattern))
    backoffs = dict(
        DestinationState.objects.filter(backoff_until__gt=timezone.now()).values_list("key", "backoff_until")
    )
    return _Snapshot(
        expires=time.monotonic() + settings.POSTWERK_THROTTLE_CACHE_SECONDS,
        exact={r.pattern: r for r in rules if r.match == ThrottleRule.Match.DOMAIN and not r.pattern.startswith("*.")},
        wildcard=[r for r in by_length if r.match == ThrottleRule.Match.DOMAIN and r.pattern.startswith("*.")],
        mx=[r for r in by_length if r.match == ThrottleRule.Match.MX],
        backoffs=backoffs,
    )


def _current() -> _Snapshot:
    global _snapshot
    snap = _snapshot
    if snap is None or snap.expires <= time.monotonic():
        snap = _load()
        with _lock:
            _snapshot = snap
    return snap


def rules_forget() -> None:
    """Drop this process's cached rules and back-offs (tests; the admin's changes reach other processes in
    POSTWERK_THROTTLE_CACHE_SECONDS)."""
    global _snapshot
    with _lock:
        _snapshot = None
        _wakes.clear()


# --- back-off ---------------------------------------------------------------------------------------------

# Wording receivers use when they want us to slow down (Gmail 4.7.28 "unusual rate", Yahoo TSS04 "temporarily
# deferred", Microsoft 4.7.500 "server busy", Postfix/Exim "too many connections"/"rate limit"). A bare "try again
# later" is every 4xx's text, and says nothing about the destination as a whole.
_SLOW_DOWN = re.compile(
    r"rate.?limit|rate exceeded|too many (connections|messages|mails|sessions|concurrent)|slow(ing)? down|"
    r"throttl|temporarily deferred|unusual rate|receiving mail at a rate|server busy",
    re.IGNORECASE,
)
_GREYLIST = re.compile(r"gr[ea]ylist", re.IGNORECASE)
# smtplib reports a refused banner as "(421, b'...')": that is the receiver, not a network failure of ours.
_REFUSED_BANNER = re.compile(r"\(421, ")


def asks_backoff(reply: Reply) -> bool:
    """Whether a reply asks the whole destination to wait (not just this one message)."""
    if not 400 <= reply.code < 500:
        return False
    if _GREYLIST.search(reply.text):
        return False  # greylisting is about one sender/recipient pair; the retry schedule handles it
    if reply.enhanced.startswith("4.4."):
        # Our own network failures (refused, timed out, connection lost) carry 4.4.x and are retried per message;
        # a 421 banner ("too many connections from your IP") arrives this way too and does ask for a back-off.
        return bool(_REFUSED_BANNER.search(reply.text) or _SLOW_DOWN.search(reply.text))
    return reply.code == 421 or reply.enhanced.startswith("4.7.") or bool(_SLOW_DOWN.search(reply.text))


def backoff_set(keys: list[str], reason: str, now: datetime | None = None) -> datetime:
    """Back off these destination keys; returns until when. A key already backed off keeps its back-off (two
    sessions refused at once must not double it); one asked again soon after its last back-off ended gets twice
    that last one, up to the maximum."""
    now = now or timezone.now()
    base, cap = settings.POSTWERK_THROTTLE_BACKOFF, settings.POSTWERK_THROTTLE_BACKOFF_MAX
    DestinationState.objects.bulk_create([DestinationState(key=k, updated_at=now) for k in keys], ignore_conflicts=True)
    latest = now
    for row in DestinationState.objects.filter(key__in=keys):
        previous = row.backoff_until
        if previous is not None and previous > now:
            latest = max(latest, previous)
            continue
        seconds = base
        if previous is not None and (now - previous).total_seconds() < cap:
            seconds = min(cap, 2 * max(base, (previous - row.updated_at).total_seconds()))
        until = now + timedelta(seconds=seconds)
        DestinationState.objects.filter(pk=row.pk).update(
            backoff_until=until, backoff_reason=reason[:2000], updated_at=now
        )
        latest = max(latest, until)
    snap = _snapshot
    if snap is not None:  # this process sees its own back-off at once; others within the cache period
        for key in keys:
            snap.backoffs[key] = latest
    log.warning("backing off %s until %s: %s", ", ".join(keys), latest.isoformat(), reason)
    return latest


def states_idle_delete(before: datetime, batch: int = 500) -> int:
    """Delete the state of destinations untouched since `before`: no back-off and no window since then. One row
    per recipient domain ever mailed would otherwise pile up; a later send creates its row again. `batch` rows
    per statement, so no long lock. Returns the rows deleted."""
    idle = (
        Q(updated_at__lt=before)
        & (Q(backoff_until__isnull=True) | Q(backoff_until__lt=before))
        & (Q(window_start__isnull=True) | Q(window_start__lt=before))
    )
    deleted = 0
    while ids := list(DestinationState.objects.filter(idle).values_list("pk", flat=True)[:batch]):
        # The condition again: a row used since it was read stays.
        deleted += DestinationState.objects.filter(idle, pk__in=ids).delete()[0]
        if len(ids) < batch:
            break
    return deleted


def _backoff_until(keys: list[str], now: datetime) -> datetime | None:
    found = DestinationState.objects.filter(key__in=keys, backoff_until__gt=now).values_list("backoff_until", flat=True)
    return max(found, default=None)


# --- the per-minute window --------------------------------------------------------------------------------


def _not_backed_off(now: datetime) -> Q:
    return Q(backoff_until__isnull=True) | Q(backoff_until__lte=now)


def tokens_take(key: str, limit: int, wanted: int, now: datetime) -> tuple[int, datetime]:
    """Up to `wanted` messages of the current window of `key` (at most `limit` per window). Returns how many were
    granted and the window's start, or (0, when the next window opens)."""
    window = timedelta(seconds=settings.POSTWERK_THROTTLE_WINDOW)
    for _ in range(5):  # each miss means another process moved the row in between; re-read and try again
        row = DestinationState.objects.filter(key=key).values("window_start", "window_count", "backoff_until").first()
        if row is None:
            DestinationState.objects.bulk_create([DestinationState(key=key, updated_at=now)], ignore_conflicts=True)
            continue
        if row["backoff_until"] is not None and row["backoff_until"] > now:
            return 0, row["backoff_until"]
        start, count = row["window_start"], row["window_count"]
        if start is None or start + window <= now:
            grant = min(wanted, limit)
            expired = Q(window_start__isnull=True) | Q(window_start__lte=now - window)
            if DestinationState.objects.filter(expired, _not_backed_off(now), key=key).update(
                window_start=now, window_count=grant
            ):
                return grant, now
            continue
        grant = min(wanted, limit - count)
        if grant <= 0:
            return 0, start + window
        if DestinationState.objects.filter(
            _not_backed_off(now), key=key, window_start__gt=now - window, window_count__lte=limit - grant
        ).update(window_count=F("window_count") + grant):
            return grant, start
    return 0, now + timedelta(seconds=min(1.0, settings.POSTWERK_THROTTLE_WINDOW))


def tokens_refund(key: str, window_start: datetime, count: int) -> None:
    """Give back messages taken but not sent (another worker had claimed them), if still the same window."""
    if count > 0:
        DestinationState.objects.filter(key=key, window_start=window_start, window_count__gte=count).update(
            window_count=F("window_count") - count
        )


# --- one destination, as a delivery loop sees it ---------------------------------------------------------


class Throttle:
    """The limits of one destination for one delivery loop: its slot, its count on the current connection, and
    when to come back when the answer is "not now"."""

    def __init__(self, domain: str, rule: Rule | None) -> None:
        self.domain, self.rule = domain, rule
        self.keys = list(dict.fromkeys([domain] + ([rule.key] if rule else [])))
        self.slot: Slot | None = None
        self.sent = 0  # messages over the current connection
        self.retry_at: datetime | None = None  # set when admit() said no, or a back-off began
        self._window: datetime | None = None

    @property
    def limited(self) -> bool:
        """Whether mail here must be admitted first: a rule, or a back-off this process knows of."""
        if self.rule is not None:
            return True
        backoffs = _current().backoffs
        now = None
        for key in self.keys:
            until = backoffs.get(key)
            if until is not None:
                now = now or timezone.now()
                if until > now:
                    return True
        return False

    def admit(self, wanted: int) -> int:
        """How many of `wanted` messages may be claimed now; 0 means none, and retry_at says when to try again.
        Holds a connection slot from here until release()."""
        now = timezone.now()
        self.retry_at = None
        until = _backoff_until(self.keys, now)
        if until is not None:
            self.retry_at = until
            return 0
        rule = self.rule
        if rule is None:
            return wanted
        if rule.max_connections and self.slot is None:
            self.slot = slot_take(rule.key, rule.max_connections)
            if self.slot is None:
                self.retry_at = now + timedelta(seconds=settings.POSTWERK_THROTTLE_SLOT_RETRY)
                return 0
        grant = wanted
        if rule.max_messages_per_connection:
            grant = min(grant, max(0, rule.max_messages_per_connection - self.sent))
        if rule.max_messages_per_minute and grant:
            grant, start = tokens_take(rule.key, rule.max_messages_per_minute, grant, now)
            if not grant:
                self.retry_at = start
                return 0
            self._window = start
        return grant

    def refund(self, count: int) -> None:
        rule = self.rule
        if count > 0 and rule is not None and rule.max_messages_per_minute and self._window is not None:
            tokens_refund(rule.key, self._window, count)

    def renew(self) -> bool:
        """Keep the slot's lease alive while the session lives; False when it was lost."""
        return self.slot is None or slot_renew(self.slot)

    def connection_full(self, sent: int) -> bool:
        """Count messages sent over the connection; True when it has carried as many as the rule allows."""
        self.sent += sent
        limit = self.rule.max_messages_per_connection if self.rule else None
        return bool(limit and self.sent >= limit)

    def connection_closed(self) -> None:
        """The session ended: its slot goes back, and the next one starts counting afresh."""
        self.sent = 0
        self.release()

    def release(self) -> None:
        if self.slot is not None:
            slot, self.slot = self.slot, None
            slot_release(slot)

    def backoff(self, reply: Reply) -> datetime:
        self.retry_at = backoff_set(self.keys, str(reply))
        return self.retry_at


def throttle_for(domain: str, mx_hosts: list[str]) -> Throttle:
    """The destination's throttle; in memory (the cached rule set) unless the cache is due a refresh."""
    return Throttle(domain, _current().rule_for(domain, mx_hosts))


# --- mail that may not go now -----------------------------------------------------------------------------


def postpone(domain: str, recipient_ids: list, until: datetime | None, *, claimed: bool = False, lane: str = "") -> int:
    """Put recipients back to wait until `until` (now when None), not counted as an attempt, and schedule a
    delivery task for the destination then. `claimed`: they were claimed but never attempted (a back-off came
    first); the attempt and the `sent` event's sequence number the claim reserved are given back (the event is
    written only with an outcome), so the next claim's `sent` carries the same attempt number."""
    now = timezone.now()
    until = until or now
    if claimed:
        moved = claims_given_back(recipient_ids, until=until, at=now)
    else:
        moved = Recipient.objects.filter(id__in=recipient_ids, state=RecipientState.QUEUED).update(
            next_attempt_at=until, updated_at=now
        )
    if moved:
        wake_schedule(domain, until, lane)
    return moved


_wakes: dict[tuple[str, str], float] = {}  # destination -> when the delivery task this process scheduled for it runs


def wake_schedule(domain: str, at: datetime, lane: str = "") -> None:
    """A delivery task for the destination at `at` (one per destination and process at a time: it drains all
    that is queued there, so a burst of refused tasks does not turn into a burst of delayed ones)."""
    at_ts, now_ts = at.timestamp(), time.time()
    with _lock:
        pending = _wakes.get((domain, lane))
        if pending is not None and now_ts < pending <= at_ts + 0.5:
            return
        _wakes[(domain, lane)] = at_ts
    try:
        celery_app.send_task(
            DELIVER_TASK,
            args=[[]],
            kwargs=task_kwargs(domain, lane),
            queue=lane_queue(lane),
            countdown=max(0.0, at_ts - now_ts) + random.uniform(0, 0.2),
        )
    except Exception:  # a broker error: the rows say when they are due and the sweep enqueues them then
        log.exception("could not schedule delivery to %s; the sweep will", domain)
