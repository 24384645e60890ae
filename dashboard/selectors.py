"""Reads only the dashboard needs (statistics, what needs attention, search, the operators' queue view).
Reads it shares with the API stay in `sending.selectors`; every read here is scoped to one organization,
except the operators' queue view, which is platform-wide by design."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organization
from dashboard.templatetags.dashboard_format import SCOPE_LABELS
from sending.domains.guard import domain_refusal
from sending.models import (
    BlocklistListing,
    DnsCheck,
    DnsCheckStatus,
    Domain,
    InboundMessage,
    Message,
    Recipient,
    RecipientState,
    Reputation,
    ReputationScope,
    ReputationSnapshot,
    ReputationState,
    SendCounter,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from sending.reputation.blocklists import listings_for
from sending.reputation.rates import BREAKER_SCOPES, paused_by_own_breaker, reputations_for, thresholds_for
from sending.reputation.send_limits import WARNING_SHARE, limits_for, windows_for
from sending.selectors import message_list
from sending.stats.reading import Stats, stats_read

# --- Overview ---------------------------------------------------------------------------------------------

PERIODS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
# The statistics page looks further back (a year by day is 365 of the stats service's day rows per metric).
LONG_PERIODS = {**PERIODS, "90d": "Last 90 days", "365d": "Last 365 days"}


def period_range(period: str, now: datetime) -> tuple[datetime, datetime, str]:
    """`24h`: the last 24 hours by hour, this one included; `Nd`: the last N UTC days by day, today included."""
    if period == "24h":
        hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return hour - timedelta(hours=23), hour + timedelta(hours=1), "hour"
    days = int(period.removesuffix("d"))
    today = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
    return today - timedelta(days=days - 1), today + timedelta(days=1), "day"


def period_stats(*, organization: Organization, period: str, group_by: str | None = None, series: bool = True) -> Stats:
    """The stats service's numbers (the ones GET /api/v1/stats answers) for one of LONG_PERIODS; `series` False:
    the totals only (a breakdown)."""
    start, end, interval = period_range(period, timezone.now())
    return stats_read(
        organization_id=organization.pk, start=start, end=end, interval=interval, group_by=group_by, series=series
    )


@dataclass(frozen=True)
class Attention:
    level: str  # "error": something that worked broke; "warning": not set up yet, or waiting
    text: str
    domain: Domain | None = None
    link: str = ""  # where to act, when not the domain's page
    link_text: str = ""


def attention(*, organization: Organization, reputations: list[Reputation] | None = None) -> list[Attention]:
    """What a member should act on: a verified domain whose DNS broke, a domain still waiting for its records,
    recipients waiting on retries, a paused or warned sending scope (of `reputations`), held mail, a webhook
    endpoint failing or disabled."""
    items: list[Attention] = []
    broken = (
        DnsCheck.objects.filter(
            domain__organization=organization, status__in=[DnsCheckStatus.MISSING, DnsCheckStatus.WRONG]
        )
        .select_related("domain")
        .order_by("domain__name", "name")
    )
    for check in broken:
        if check.domain.verified_at is None:
            continue  # listed once below, as a domain still waiting for its records
        label = check_label(check.name)
        if check.ok_at is not None:
            text = f"{check.domain.name}: {label} broke on {check.changed_at:%Y-%m-%d %H:%M} UTC. {check.message}"
            items.append(Attention("error", text, check.domain))
        else:
            items.append(
                Attention("warning", f"{check.domain.name}: {label} is not set up. {check.message}", check.domain)
            )
    for domain in Domain.objects.filter(organization=organization, verified_at__isnull=True).order_by("name"):
        items.append(
            Attention("warning", f"{domain.name} cannot send yet: publish its DNS records, then check.", domain)
        )
    deferred = Recipient.objects.filter(organization=organization, state=RecipientState.DEFERRED).count()
    if deferred:
        items.append(
            Attention(
                "warning",
                f"{deferred} recipient{'s' if deferred != 1 else ''} waiting for a retry.",
                None,
                f"{reverse('dashboard:messages', args=[organization.pk])}?status=deferred",
                "See deferred messages",
            )
        )
    items += _reputation_attention(organization, reputations)
    items += _send_limit_attention(organization)
    items += _blocklist_attention(organization)
    held = Recipient.objects.filter(organization=organization, state=RecipientState.HELD).count()
    if held:
        items.append(
            Attention(
                "warning",
                f"{held} recipient{'s' if held != 1 else ''} held: release or cancel them.",
                None,
                reverse("dashboard:held", args=[organization.pk]),
                "See held messages",
            )
        )
    items += _webhook_attention(organization)
    # Problems (something that worked broke, sending paused) before notes; otherwise in the order found.
    return sorted(items, key=lambda item: item.level != "error")


def _reputation_attention(organization: Organization, reputations: list[Reputation] | None) -> list[Attention]:
    items = []
    for rep in reputations or []:
        if rep.state == ReputationState.OK:
            continue
        scope = SCOPE_LABELS.get(rep.scope, rep.scope)
        name = getattr(rep, "scope_name", "") or rep.scope_id
        what = "the organization" if rep.scope == ReputationScope.ORGANIZATION else f"{scope} {name}"
        link = reverse("dashboard:reputation", args=[organization.pk])
        if rep.state == ReputationState.PAUSED:
            items.append(
                Attention("error", f"Sending is paused for {what}: {rep.reason}", None, link, "See the numbers")
            )
        else:
            items.append(
                Attention("warning", f"Reputation warning for {what}: {rep.reason}", None, link, "See the numbers")
            )
    return items


_PERIOD_WORDS = {SendCounter.Period.HOUR: "this hour", SendCounter.Period.DAY: "today"}


def _send_limit_attention(organization: Organization) -> list[Attention]:
    """A send limit reached, or within WARNING_SHARE of it, in the current window (one query, none when
    unlimited)."""
    windows = windows_for(organization, timezone.now())
    if not windows:
        return []
    match = Q()
    for window in windows:
        match |= Q(period=window.period, window_start=window.start)
    used = dict(SendCounter.objects.filter(match, organization=organization).values_list("period", "count"))
    held = (organization.limit_action or settings.POSTWERK_LIMIT_ACTION) == "hold"
    items = []
    for window in windows:
        count = used.get(window.period, 0)
        numbers = f"{count} of {window.limit} messages {_PERIOD_WORDS[window.period]}"
        if count >= window.limit:
            if held:
                text = (
                    f"Send limit reached: {numbers}. New mail is held until {window.end:%Y-%m-%d %H:%M} UTC, then sent."
                )
                items.append(
                    Attention("error", text, None, reverse("dashboard:held", args=[organization.pk]), "See held mail")
                )
            else:
                text = f"Send limit reached: {numbers}. New mail is refused until {window.end:%Y-%m-%d %H:%M} UTC."
                items.append(Attention("error", text))
        elif count >= window.limit * WARNING_SHARE:
            text = f"Near the send limit: {numbers} (the window reopens at {window.end:%H:%M} UTC)."
            items.append(Attention("warning", text))
    return items


def _blocklist_attention(organization: Organization) -> list[Attention]:
    items = []
    link = reverse("dashboard:reputation", args=[organization.pk]) + "#blocklists-h"
    for row in listings_for(organization.pk):
        if not row.listed:
            break  # listed rows come first
        since = f" since {row.listed_since:%Y-%m-%d %H:%M} UTC" if row.listed_since else ""
        why = f" ({row.reason})" if row.reason else ""
        if row.kind == BlocklistListing.Kind.DOMAIN:
            text = f"{row.target} is listed on the blocklist {row.zone}{since}{why}: its mail may be refused."
        else:
            text = (
                f"The platform's sending IP {row.target} is listed on {row.zone}{since}{why}: some receivers may "
                "refuse mail sent from it. The operators are told too."
            )
        items.append(Attention("error", text, None, link, "See blocklists"))
    return items


def _endpoint_url(endpoint: WebhookEndpoint) -> str:
    return reverse("dashboard:webhook", args=[endpoint.organization_id, endpoint.pk])


def _webhook_attention(organization: Organization) -> list[Attention]:
    items = []
    for endpoint in WebhookEndpoint.objects.filter(organization=organization).filter(
        Q(enabled=False, disabled_at__isnull=False) | Q(enabled=True, failing_since__isnull=False)
    ):
        if not endpoint.enabled:
            text = f"Webhook {endpoint.url} was disabled on {endpoint.disabled_at:%Y-%m-%d %H:%M} UTC"
            text += f": {endpoint.disabled_reason}" if endpoint.disabled_reason else "."
            items.append(Attention("error", text, None, _endpoint_url(endpoint), "Open the endpoint"))
        else:
            items.append(
                Attention(
                    "warning",
                    f"Webhook {endpoint.url} has been failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC.",
                    None,
                    _endpoint_url(endpoint),
                    "Open the endpoint",
                )
            )
    return items


def check_label(name: str) -> str:
    """A check's key in words: "dkim:pw202501" → "DKIM key pw202501"."""
    kind, _, arg = name.partition(":")
    if kind == "dkim":
        return f"DKIM key {arg}"
    if kind == "spf":
        return "SPF of the return path" if arg == "return_path" else "SPF of the domain"
    labels = {
        "ownership": "Ownership record",
        "dmarc": "DMARC",
        "dmarc_report": "DMARC report authorisation",
        "return_path": "Return path",
    }
    return labels.get(name, name)


@dataclass(frozen=True)
class DomainStatus:
    label: str  # "Can send", "Cannot send yet" or "Cannot send": what the send API would do with its mail
    css: str
    problems: int  # checks missing or wrong, shown beside it (a missing DMARC record does not stop the mail)


def domain_status(domain: Domain, checks: list[DnsCheck]) -> DomainStatus:
    """One answer for the domain list and the domain's page, from the send-time guard itself, so the two cannot
    disagree with each other or with what happens to the mail."""
    problems = sum(c.status in (DnsCheckStatus.MISSING, DnsCheckStatus.WRONG) for c in checks)
    refusal = domain_refusal(domain, domain.name)
    if refusal is None:
        return DomainStatus("Can send", "ok", problems)
    if refusal.code == "domain_unverified":
        return DomainStatus("Cannot send yet", "warning", problems)
    return DomainStatus("Cannot send", "error", problems)


def check_publisher(check: DnsCheck) -> str:
    """Who must act on a check that is not ok: "operator" when the record is the platform's (the DMARC report
    authorisation, or the SPF of the platform's return-path host that a correct CNAME points at), else "owner"."""
    return "operator" if (check.details or {}).get("publisher") == "operator" else "owner"


def _record_check_keys(record: dict) -> list[str]:
    """The checks that tell whether one record to publish is in place (the return path's SPF follows its CNAME)."""
    purpose = record["purpose"]
    if purpose == "dkim":
        return [f"dkim:{record['name'].split('._domainkey.', 1)[0]}"]
    if purpose == "return_path":
        return ["return_path", "spf:return_path"]
    if purpose == "spf":
        return ["spf:from"]
    return [purpose]


@dataclass(frozen=True)
class SetupStep:
    record: dict
    label: str
    state: str  # "done", "todo" (missing or wrong), "unknown" (DNS did not answer), "unchecked"
    publisher: str  # "owner" or "operator": who publishes the record
    problems: list[tuple[str, str]]  # (who must act, what the check found) for each check that is not ok


def _setup_state(checks: list[DnsCheck]) -> str:
    statuses = {c.status for c in checks}
    if not checks:
        return "unchecked"
    if statuses & {DnsCheckStatus.MISSING, DnsCheckStatus.WRONG}:
        return "todo"
    return "unknown" if DnsCheckStatus.ERROR in statuses else "done"


def domain_setup_steps(domain: Domain, records: list[dict], checks: list[DnsCheck]) -> list[SetupStep]:
    """Each record to publish, ticked off by the checks that look at it. An owner's record is ticked by what the
    owner controls: a return-path CNAME that is right is in place even while the platform's own SPF behind it is
    missing; that problem is listed under it as the operator's."""
    by_name = {c.name: c for c in checks}
    steps = []
    for record in records:
        found = [by_name[k] for k in _record_check_keys(record) if k in by_name]
        publisher = "operator" if record.get("publisher") == "operator" else "owner"
        own = [c for c in found if publisher == "operator" or check_publisher(c) == "owner"]
        problems = [(check_publisher(c), c.message) for c in found if c.status != DnsCheckStatus.OK]
        label = RECORD_PURPOSES.get(record["purpose"], record["purpose"])
        steps.append(SetupStep(record, label, _setup_state(own or found), publisher, problems))
    return steps


RECORD_PURPOSES = {
    "ownership": "Ownership",
    "dkim": "DKIM",
    "return_path": "Return path",
    "spf": "SPF",
    "dmarc": "DMARC",
    "dmarc_report": "DMARC report authorisation",
}


# --- Messages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageFilters:
    recipient: str = ""
    sender: str = ""
    subject: str = ""
    tag: str = ""
    message_id: str = ""
    status: str = ""
    since: date | None = None
    until: date | None = None  # inclusive: the whole day

    @property
    def active(self) -> bool:
        return any(v for v in vars(self).values())


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def message_search(*, organization: Organization, filters: MessageFilters) -> QuerySet[Message]:
    """The shared `message_list` (status, exact recipient, tag, dates) plus partial matches on recipient,
    sender and subject, and lookup by our id or the Message-ID header. Newest first."""
    recipient = filters.recipient.strip()
    qs = message_list(
        organization=organization,
        status=filters.status or None,
        recipient=recipient if "@" in recipient else None,
        tag=filters.tag.strip() or None,
        since=day_start(filters.since) if filters.since else None,
        until=day_start(filters.until) + timedelta(days=1) if filters.until else None,
    )
    if recipient and "@" not in recipient:
        qs = qs.filter(recipients__address__icontains=recipient).distinct()
    if filters.sender.strip():
        qs = qs.filter(mail_from__icontains=filters.sender.strip())
    if filters.subject.strip():
        qs = qs.filter(subject__icontains=filters.subject.strip())
    wanted = filters.message_id.strip()
    if wanted:
        bare = wanted.strip("<>")
        match = Q(message_id=f"<{bare}>") | Q(message_id=bare)
        try:
            match |= Q(pk=uuid.UUID(bare))
        except ValueError:
            pass
        qs = qs.filter(match)
    return qs.order_by("-created_at", "-id")


def page_after(qs: QuerySet[Message], cursor: str, size: int) -> tuple[list[Message], str | None]:
    """Keyset pagination on (created_at, id): no COUNT over a big table, stable while mail arrives.
    `cursor` is "<microseconds since the epoch>_<id>" of the last row shown (URL-safe as it is); returns the
    page and the next cursor. A cursor that does not parse starts from the newest."""
    stamp, _, last_id = cursor.partition("_")
    try:
        seconds, micros = divmod(int(stamp), 1_000_000)
        when = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
        qs = qs.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=uuid.UUID(last_id)))
    except (ValueError, OverflowError, OSError):
        pass
    rows = list(qs[: size + 1])
    if len(rows) > size:
        last = rows[size - 1]
        micros = int(last.created_at.timestamp()) * 1_000_000 + last.created_at.microsecond
        return rows[:size], f"{micros}_{last.pk}"
    return rows, None


def message_raw(message: Message) -> bytes:
    """The stored source (the list and detail reads defer it)."""
    raw = Message.objects.filter(pk=message.pk).values_list("raw", flat=True).first()
    return bytes(raw or b"")


# --- Operators --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    by_state: list[tuple[str, int]]
    oldest_waiting: datetime | None  # oldest recipient still queued, sending or deferred
    oldest_queued: datetime | None
    deferred_by_destination: list[dict]
    inbound_by_state: list[tuple[str, int]]
    waiting_by_organization: list[dict]


WAITING = [RecipientState.QUEUED, RecipientState.SENDING, RecipientState.DEFERRED]


def queue_stats(*, destinations: int = 50) -> QueueStats:
    counts = dict(Recipient.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    waiting = Recipient.objects.filter(state__in=WAITING)
    deferred = (
        Recipient.objects.filter(state=RecipientState.DEFERRED)
        .values("domain")
        .annotate(n=Count("id"), oldest=Min("created_at"), next_attempt=Min("next_attempt_at"))
        .order_by("-n", "domain")[:destinations]
    )
    rows = list(deferred)
    # One recent reply per destination says why (a greylisting 450 reads differently from a 421 rate limit).
    for row in rows:
        latest = (
            Recipient.objects.filter(state=RecipientState.DEFERRED, domain=row["domain"])
            .order_by("-updated_at")
            .values("last_code", "last_enhanced", "last_text", "mx_host")
            .first()
        )
        row["last"] = latest or {}
    inbound = dict(InboundMessage.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    by_org = (
        waiting.values("organization__name")
        .annotate(n=Count("id"), oldest=Min("created_at"))
        .order_by("-n", "organization__name")[:20]
    )
    return QueueStats(
        by_state=[(s, counts.get(s, 0)) for s in RecipientState.values],
        oldest_waiting=waiting.aggregate(m=Min("created_at"))["m"],
        oldest_queued=Recipient.objects.filter(state=RecipientState.QUEUED).aggregate(m=Min("created_at"))["m"],
        deferred_by_destination=rows,
        inbound_by_state=[(s, inbound.get(s, 0)) for s in InboundMessage.State.values],
        waiting_by_organization=list(by_org),
    )


@dataclass
class OrganizationRow:
    organization: Organization
    members: int
    reputation: Reputation  # the organization scope's (unsaved, "ok" and never computed, when there is none)
    state: str
    bounce_rate: float
    complaint_rate: float
    deliveries: int
    scopes_paused: int  # domains, keys and credentials paused (the organization scope aside)
    scopes_warning: int
    limits: dict[str, int]  # effective: the organization's own or the platform default; 0 = none
    used: dict[str, int]  # messages counted in the current hour and day
    limit_action: str  # effective
    held: int


def organizations_overview() -> list[OrganizationRow]:
    """Every organization with its reputation, send limits and use, and held mail: a handful of grouped
    queries, whatever the number of organizations."""
    now = timezone.now().astimezone(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    windows = {SendCounter.Period.HOUR: hour, SendCounter.Period.DAY: hour.replace(hour=0)}
    members = dict(Membership.objects.values("organization").annotate(n=Count("id")).values_list("organization", "n"))
    held = dict(
        Recipient.objects.filter(state=RecipientState.HELD)
        .values("organization")
        .annotate(n=Count("id"))
        .values_list("organization", "n")
    )
    used: dict[tuple[int, str], int] = {
        (org, period): count
        for org, period, count in SendCounter.objects.filter(
            Q(period=SendCounter.Period.HOUR, window_start=windows[SendCounter.Period.HOUR])
            | Q(period=SendCounter.Period.DAY, window_start=windows[SendCounter.Period.DAY])
        ).values_list("organization", "period", "count")
    }
    own: dict[int, Reputation] = {}
    other: dict[tuple[int, str], int] = {}
    for rep in Reputation.objects.exclude(state=ReputationState.OK, scope__in=SUB_SCOPES):
        if rep.scope == ReputationScope.ORGANIZATION:
            own[rep.organization_id] = rep
        else:
            other[(rep.organization_id, rep.state)] = other.get((rep.organization_id, rep.state), 0) + 1
    rows = []
    for org in Organization.objects.order_by("name"):
        rep = own.get(org.pk)
        rows.append(
            OrganizationRow(
                organization=org,
                members=members.get(org.pk, 0),
                reputation=rep or Reputation(organization=org, scope=ReputationScope.ORGANIZATION, scope_id=org.pk),
                state=rep.state if rep else ReputationState.OK,
                bounce_rate=rep.bounce_rate if rep else 0.0,
                complaint_rate=rep.complaint_rate if rep else 0.0,
                deliveries=rep.deliveries if rep else 0,
                scopes_paused=other.get((org.pk, ReputationState.PAUSED), 0),
                scopes_warning=other.get((org.pk, ReputationState.WARNING), 0),
                limits=limits_for(org),
                used={period: used.get((org.pk, period), 0) for period in windows},
                limit_action=org.limit_action or settings.POSTWERK_LIMIT_ACTION,
                held=held.get(org.pk, 0),
            )
        )
    return rows


SUB_SCOPES = [ReputationScope.DOMAIN, ReputationScope.API_KEY, ReputationScope.SMTP_CREDENTIAL]


def reputation_history(organization: Organization, limit: int = 30) -> list[ReputationSnapshot]:
    return list(
        ReputationSnapshot.objects.filter(organization=organization)
        .select_related("reputation")
        .order_by("-created_at", "-pk")[:limit]
    )


# --- webhooks ----------------------------------------------------------------------------------------------


def webhook_endpoints(organization: Organization) -> QuerySet:
    """The organization's endpoints, oldest first, each with its last attempt's status and error."""
    last = WebhookAttempt.objects.filter(delivery__endpoint=OuterRef("pk")).order_by("-started_at", "-pk")
    return (
        WebhookEndpoint.objects.filter(organization=organization)
        .annotate(
            last_attempt_at=Subquery(last.values("started_at")[:1]),
            last_attempt_status=Subquery(last.values("status_code")[:1]),
            last_attempt_error=Subquery(last.values("error")[:1]),
        )
        .order_by("created_at")
    )


def webhook_recent_deliveries(
    endpoint: WebhookEndpoint, *, event_type: str = "", state: str = "", recipient: str = "", limit: int = 25
) -> list[WebhookDelivery]:
    """An endpoint's newest deliveries, filtered, each with its event's message and recipient and every attempt
    (newest first). A test send has no event: its type is in its sample payload."""
    qs = WebhookDelivery.objects.filter(endpoint=endpoint)
    if event_type:
        qs = qs.filter(Q(event__type=event_type) | Q(event__isnull=True, payload__type=event_type))
    if state:
        qs = qs.filter(state=state)
    if recipient:
        qs = qs.filter(event__recipient__address__iexact=recipient.strip())
    return list(
        qs.select_related("event", "event__recipient", "event__message")
        .only(
            *(f.name for f in WebhookDelivery._meta.concrete_fields),
            "event__id",
            "event__type",
            "event__message_id",
            "event__recipient_id",
            "event__recipient__address",
            "event__message__subject",
        )
        .prefetch_related(Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("-started_at", "-pk")))
        .order_by("-created_at")[:limit]
    )


# --- Reputation page --------------------------------------------------------------------------------------

HISTORY_PER_SCOPE = 10


def reputation_scopes(organization: Organization) -> list[Reputation]:
    """Every sending scope of the organization with what its page shows attached: `thresholds` (in force),
    `breaker` (takes the organization's own thresholds), `resumable` (paused by those: the organization may
    resume it) and `recent` (its newest state changes). Two queries plus one per paused key or credential."""
    rows = reputations_for(organization.pk)
    history: dict[int, list[ReputationSnapshot]] = {}
    for snapshot in ReputationSnapshot.objects.filter(organization=organization).order_by("-created_at", "-pk")[:500]:
        recent = history.setdefault(snapshot.reputation_id, [])
        if len(recent) < HISTORY_PER_SCOPE:
            recent.append(snapshot)
    for rep in rows:
        rep.thresholds = thresholds_for(rep)  # type: ignore[attr-defined]
        rep.breaker = rep.scope in BREAKER_SCOPES  # type: ignore[attr-defined]
        rep.resumable = paused_by_own_breaker(rep)  # type: ignore[attr-defined]
        rep.recent = history.get(rep.pk, [])  # type: ignore[attr-defined]
    return rows
