"""Send limits: messages per organization (and per message stream, at the end) per fixed UTC hour and day.

A request claims its messages with one atomic upsert that adds them to every limited window's counter and
returns the new counts; what does not fit is given back at once (a second statement, only when over). The
counter therefore holds the messages admitted in the window, and concurrent requests can never admit more than
the limit between them: each computes its share from the count its own atomic increment returned.

For the send API it runs inside the request's one transaction (sending/api/views.OneTransactionPost, #21): a
refused or failed request rolls its count back with everything else, and the counter row's lock is held from
the upsert until the request commits. An organization WITH a limit therefore has its concurrent requests wait on
that row for one another's insert and commit; before, the count was its own transaction, whose lock was held
until its own commit's disk flush, nearly as long, and each request paid two write commits instead of one.
Without a limit (the default) there is no statement and no lock. The SMTP group commit still counts in its own
short transaction before the group's, so a group that fails after it leaves a slight over-count for the rest of
the window.

Unlimited (the default: POSTWERK_SEND_LIMIT_HOURLY and _DAILY are 0) costs nothing: no statement at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.models import Organization
from sending.models import EventType, Message, SendCounter, Stream, StreamSendCounter
from sending.states import organization_event

Period = SendCounter.Period
WARNING_SHARE = 0.9


@dataclass(frozen=True)
class Window:
    period: str
    start: datetime
    end: datetime
    limit: int


@dataclass(frozen=True)
class Admission:
    """How many of the requested messages may go now; the rest are over the limit until `retry_after`."""

    allowed: int
    requested: int
    window: Window | None = None  # the window that refused some, if any
    retry_after: int = 0

    @property
    def over(self) -> int:
        return self.requested - self.allowed


def limits_for(organization: Organization) -> dict[str, int]:
    """The organization's limits (its own, or the platform default); 0 means unlimited."""
    hourly = organization.hourly_limit
    daily = organization.daily_limit
    return {
        Period.HOUR: settings.POSTWERK_SEND_LIMIT_HOURLY if hourly is None else hourly,
        Period.DAY: settings.POSTWERK_SEND_LIMIT_DAILY if daily is None else daily,
    }


def windows_for(organization: Organization, now: datetime) -> list[Window]:
    limits = limits_for(organization)
    return _windows(now, limits[Period.HOUR], limits[Period.DAY])


def _windows(now: datetime, hourly: int | None, daily: int | None) -> list[Window]:
    """The fixed UTC hour and day around `now` that have a limit (0 or None: unlimited)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    spans = ((Period.HOUR, hourly, hour, hour + timedelta(hours=1)), (Period.DAY, daily, day, day + timedelta(days=1)))
    return [Window(period, start, end, limit) for period, limit, start, end in spans if limit and limit > 0]


def messages_admit(*, organization: Organization, count: int, now: datetime | None = None) -> Admission:
    """Count `count` new messages against the organization's windows; returns how many fit."""
    now = now or timezone.now()
    windows = windows_for(organization, now)
    if not windows or count <= 0:
        return Admission(allowed=count, requested=count)
    counts = _increment(SendCounter, "organization_id", organization.pk, windows, count)
    allowed, refusing = count, None
    for window in windows:
        before = counts[window.period][0] - count
        fits = max(0, min(count, window.limit - before))
        if fits < allowed:
            allowed, refusing = fits, window
    if allowed < count:
        # Give back what did not fit, so the counter holds only admitted messages.
        _give_back(SendCounter.objects.filter(organization_id=organization.pk), windows, count - allowed)
    for window in windows:
        total, warned, reached = counts[window.period]
        used = total - count + allowed
        _announce(organization.pk, window, used, over=allowed < count, already=(warned, reached), now=now)
    if refusing is None:
        return Admission(allowed=count, requested=count)
    retry_after = max(1, int((refusing.end - now).total_seconds()) + 1)
    return Admission(allowed=allowed, requested=count, window=refusing, retry_after=retry_after)


def messages_refund(*, organization: Organization, count: int, now: datetime) -> None:
    """Give back `count` admitted messages (a request that was refused after all stores nothing)."""
    windows = windows_for(organization, now)
    if windows and count > 0:
        _give_back(SendCounter.objects.filter(organization_id=organization.pk), windows, count)


def _window_match(windows: list[Window]) -> Q:
    q = Q()
    for window in windows:
        q |= Q(period=window.period, window_start=window.start)
    return q


def _increment(
    model: type[SendCounter] | type[StreamSendCounter], owner: str, owner_id: int, windows: list[Window], count: int
) -> dict[str, tuple[int, bool, bool]]:
    """One atomic statement: insert each window's counter of `owner` (organization_id or stream_id) or add to it,
    returning the new counts (and, for an organization, whether its 90% and 100% events already went out)."""
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    start_field = meta.get_field("window_start")
    flags = ("warned", "reached") if model is SendCounter else ()
    columns = ", ".join(quote(c) for c in (owner, "period", "window_start", "count", *flags))
    values = ", ".join(["(" + ", ".join(["%s"] * (4 + len(flags))) + ")"] * len(windows))
    params: list[object] = []
    for window in windows:
        params += [owner_id, window.period, start_field.get_db_prep_value(window.start, connection), count]
        params += [False] * len(flags)
    count_col = quote("count")
    returned = ", ".join(quote(c) for c in ("period", "count", *flags))
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES {values} "  # noqa: S608 - identifiers from model metadata only
        f"ON CONFLICT ({quote(owner)}, {quote('period')}, {quote('window_start')}) "
        f"DO UPDATE SET {count_col} = {table}.{count_col} + excluded.{count_col} "
        f"RETURNING {returned}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {
            period: (total, bool(rest and rest[0]), bool(rest and rest[1]))
            for period, total, *rest in cursor.fetchall()
        }


def _give_back(counters: QuerySet, windows: list[Window], count: int) -> None:
    """Take `count` back off these windows' counters (messages counted that are not sent after all)."""
    counters.filter(_window_match(windows)).update(count=F("count") - count)


def _announce(
    organization_id: int, window: Window, used: int, *, over: bool, already: tuple[bool, bool], now: datetime
) -> None:
    """`send_limit.warning` at 90% and `send_limit.reached` at 100% (or on the first message over), each once
    per window: the conditional UPDATE's row count says which request sends it."""
    for flag, event_type, due, done in (
        ("warned", EventType.SEND_LIMIT_WARNING, used >= window.limit * WARNING_SHARE, already[0]),
        ("reached", EventType.SEND_LIMIT_REACHED, used >= window.limit or over, already[1]),
    ):
        if done or not due:
            continue
        won = SendCounter.objects.filter(
            organization_id=organization_id, period=window.period, window_start=window.start, **{flag: False}
        ).update(**{flag: True})
        if won:
            details = {
                "period": window.period,
                "limit": window.limit,
                "count": used,
                "window_start": window.start.isoformat(),
                "window_end": window.end.isoformat(),
            }
            organization_event(organization_id, event_type, details, created_at=now)


def window_end(organization: Organization, now: datetime | None = None) -> datetime | None:
    """When the earliest limited window reopens (for Retry-After), or None when unlimited."""
    windows = windows_for(organization, now or timezone.now())
    return min((w.end for w in windows), default=None)


# --- a message stream's own limits (#23) ----------------------------------------------------------------------
#
# Counted as the organization's are: one atomic upsert per stream adds the stream's messages to its windows'
# counters (StreamSendCounter) and returns the new counts, so concurrent requests can never admit more than the
# limit between them; what does not fit is given back at once and held. Streams without limits cost nothing.


@dataclass
class StreamAdmission:
    """Which messages a stream's own limits hold (index -> the hold's details), and what was counted."""

    holds: dict[int, dict] = field(default_factory=dict)
    # stream pk -> (its limited windows, the indexes admitted and counted there)
    admitted: dict[int, tuple[list[Window], set[int]]] = field(default_factory=dict)

    def refund(self, indexes: Iterable[int] | None = None) -> None:
        """Give back the admitted messages among `indexes` (all when None): they are not sent after all (held by
        the organization's limit, or the request was refused)."""
        wanted = None if indexes is None else set(indexes)
        for stream_id, (windows, admitted) in self.admitted.items():
            n = len(admitted if wanted is None else admitted & wanted)
            if n:
                _give_back(StreamSendCounter.objects.filter(stream_id=stream_id), windows, n)


def stream_windows(stream: Stream, now: datetime) -> list[Window]:
    return _windows(now, stream.hourly_limit, stream.daily_limit)


def streams_admit(messages: list[tuple[int, Message]], now: datetime) -> StreamAdmission:
    """Count these (index, message) pairs against their streams' own hourly and daily limits, in order: what
    fits is admitted, the rest is held (by index, with the window that refused it)."""
    by_stream: dict[int, list[int]] = {}
    streams: dict[int, Stream] = {}
    for n, message in messages:
        stream = message.stream
        if stream is not None and (stream.hourly_limit or stream.daily_limit):
            by_stream.setdefault(stream.pk, []).append(n)
            streams[stream.pk] = stream
    result = StreamAdmission()
    for stream_id, indexes in by_stream.items():
        stream, windows = streams[stream_id], stream_windows(streams[stream_id], now)
        count = len(indexes)
        counts = _increment(StreamSendCounter, "stream_id", stream_id, windows, count)
        allowed, refusing = count, None
        for window in windows:
            fits = max(0, min(count, window.limit - (counts[window.period][0] - count)))
            if fits < allowed:
                allowed, refusing = fits, window
        if allowed < count:
            _give_back(StreamSendCounter.objects.filter(stream_id=stream_id), windows, count - allowed)
        result.admitted[stream_id] = (windows, set(indexes[:allowed]))
        if refusing is not None:
            hold = {
                "reason": "send_limit",
                "stream": stream.name,
                "period": refusing.period,
                "limit": refusing.limit,
                "window_end": refusing.end.isoformat(),
            }
            result.holds.update((n, hold) for n in indexes[allowed:])
    return result
