"""Send limits: messages per organization per fixed UTC hour and day.

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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Organization
from sending.models import EventType, Message, SendCounter
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
    now = now.astimezone(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    spans = {Period.HOUR: (hour, hour + timedelta(hours=1)), Period.DAY: (day, day + timedelta(days=1))}
    return [Window(period, *spans[period], limit) for period, limit in limits_for(organization).items() if limit > 0]


def messages_admit(*, organization: Organization, count: int, now: datetime | None = None) -> Admission:
    """Count `count` new messages against the organization's windows; returns how many fit."""
    now = now or timezone.now()
    windows = windows_for(organization, now)
    if not windows or count <= 0:
        return Admission(allowed=count, requested=count)
    counts = _increment(organization.pk, windows, count)
    allowed, refusing = count, None
    for window in windows:
        before = counts[window.period][0] - count
        fits = max(0, min(count, window.limit - before))
        if fits < allowed:
            allowed, refusing = fits, window
    if allowed < count:
        # Give back what did not fit, so the counter holds only admitted messages.
        SendCounter.objects.filter(organization_id=organization.pk).filter(_window_match(windows)).update(
            count=F("count") - (count - allowed)
        )
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
        SendCounter.objects.filter(organization_id=organization.pk).filter(_window_match(windows)).update(
            count=F("count") - count
        )


def _window_match(windows: list[Window]) -> Q:
    q = Q()
    for window in windows:
        q |= Q(period=window.period, window_start=window.start)
    return q


def _increment(organization_id: int, windows: list[Window], count: int) -> dict[str, tuple[int, bool, bool]]:
    """One atomic statement: insert each window's counter or add to it, returning the new counts (and whether
    its 90% and 100% events already went out)."""
    meta = SendCounter._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    start_field = meta.get_field("window_start")
    columns = ", ".join(quote(c) for c in ("organization_id", "period", "window_start", "count", "warned", "reached"))
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(windows))
    params: list[object] = []
    for window in windows:
        params += [organization_id, window.period, start_field.get_db_prep_value(window.start, connection), count]
        params += [False, False]
    count_col = quote("count")
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES {values} "  # noqa: S608 - identifiers from model metadata only
        f"ON CONFLICT ({quote('organization_id')}, {quote('period')}, {quote('window_start')}) "
        f"DO UPDATE SET {count_col} = {table}.{count_col} + excluded.{count_col} "
        f"RETURNING {quote('period')}, {count_col}, {quote('warned')}, {quote('reached')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {period: (total, bool(warned), bool(reached)) for period, total, warned, reached in cursor.fetchall()}


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


def stream_limit_holds(messages: list[tuple[int, Message]], now: datetime) -> dict[int, dict]:
    """Which of these (index, message) pairs are over their stream's own hourly or daily limit, by index, with the
    hold's details. A stream's use is counted from its stored messages (one indexed count per limited stream and
    window), so unlike the organization's counter two requests at the same moment may together pass it by what
    they submit at once; streams without limits cost nothing."""
    by_stream: dict[int, list[tuple[int, Message]]] = {}
    for n, message in messages:
        stream = message.stream
        if stream is not None and (stream.hourly_limit or stream.daily_limit):
            by_stream.setdefault(stream.pk, []).append((n, message))
    holds: dict[int, dict] = {}
    for group in by_stream.values():
        stream = group[0][1].stream
        assert stream is not None
        hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        for period, limit, start, end in (
            (Period.HOUR, stream.hourly_limit, hour, hour + timedelta(hours=1)),
            (Period.DAY, stream.daily_limit, hour.replace(hour=0), hour.replace(hour=0) + timedelta(days=1)),
        ):
            if not limit:
                continue
            used = Message.objects.filter(stream=stream, created_at__gte=start).count()
            for n, _ in group[max(0, limit - used) :]:
                holds.setdefault(
                    n,
                    {
                        "reason": "send_limit",
                        "stream": stream.name,
                        "period": period,
                        "limit": limit,
                        "window_end": end.isoformat(),
                    },
                )
    return holds
