"""Each sending IP's own reputation, acted on as an organization's scopes are (sending.reputation.rates): the bounce
and complaint rates of the mail that left from the IP, judged by the platform's thresholds, put it in `warning`
(an event, nothing else) or `paused`. A paused IP is passed over by egress (sending.delivery.egress): its mail
leaves from another IP of the pool, from a warm IP of another pool of the organization when the pool overflows,
or waits deferred. Paused is sticky: only an operator resumes an IP (`manage.py ips resume`), and its rates then
count only what it sends from then on, so old outcomes cannot pause it again at once.

Each change is an `ip.reputation_*` event (and webhook) for the organizations using the IP: a dedicated pool's
organization, or every organization for a shared one. Computed from beat (`sending.tasks.reputation_recompute`),
one aggregate query per enabled IP; delivery only reads the IPs' states with the pools it already caches.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from mail.errors import PostwerkError
from sending.delivery.egress import pools_forget
from sending.delivery.pools import organizations_using
from sending.models import Event, EventType, ReputationState, SendingIp
from sending.reputation.ip_status import ip_numbers
from sending.reputation.rates import Numbers, judge, platform_thresholds
from sending.states import organization_events

State = ReputationState
_EVENT_FOR_STATE = {
    State.OK: EventType.IP_REPUTATION_OK,
    State.WARNING: EventType.IP_REPUTATION_WARNING,
    State.PAUSED: EventType.IP_REPUTATION_PAUSED,
}


class IpNotFound(PostwerkError, LookupError):
    pass


def ip_window_since(ip: SendingIp, now: datetime) -> datetime:
    since = now - timedelta(days=settings.POSTWERK_REPUTATION_WINDOW_DAYS)
    return max(since, ip.reputation_since) if ip.reputation_since else since


def ip_reputation_recompute(now: datetime | None = None) -> list[SendingIp]:
    """Judge every enabled sending IP; returns those whose state changed (each with an event)."""
    now = now or timezone.now()
    thresholds = platform_thresholds()
    changed = []
    for ip in SendingIp.objects.filter(enabled=True).order_by("address"):
        numbers = ip_numbers(ip.address, since=ip_window_since(ip, now))
        wanted, why = judge(numbers, thresholds)
        if _change(ip, wanted, why, numbers, now):
            changed.append(ip)
    if any(ip.reputation_state == State.PAUSED for ip in changed):
        pools_forget()  # this process stops using it at once; the others within POSTWERK_THROTTLE_CACHE_SECONDS
    return changed


def _change(ip: SendingIp, wanted: str, why: str, numbers: Numbers, now: datetime) -> bool:
    with transaction.atomic():
        current = SendingIp.objects.select_for_update().get(pk=ip.pk)
        if current.reputation_since != ip.reputation_since:
            return False  # resumed while we counted: these numbers are from before the resume
        previous = current.reputation_state
        if previous == State.PAUSED or wanted == previous:
            return False  # paused is sticky: only an operator resumes
        current.reputation_state, current.reputation_reason, current.reputation_changed_at = wanted, why, now
        current.save(update_fields=["reputation_state", "reputation_reason", "reputation_changed_at"])
        _events(current, previous, _EVENT_FOR_STATE[State(wanted)], why, now, numbers=numbers)
    ip.reputation_state, ip.reputation_reason, ip.reputation_changed_at = wanted, why, now
    return True


def ip_reputation_resume(address: str, *, actor: str, reason: str, now: datetime | None = None) -> SendingIp:
    """An operator puts a paused (or warned) IP back to `ok`; its rates start again from now. Raises IpNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        ip = SendingIp.objects.select_for_update().filter(address=address).first()
        if ip is None:
            raise IpNotFound(f"no sending IP {address}")
        previous = ip.reputation_state
        ip.reputation_state, ip.reputation_changed_at, ip.reputation_since = State.OK, now, now
        ip.reputation_reason = f"resumed by {actor}: {reason}"[:300]
        ip.save(update_fields=["reputation_state", "reputation_reason", "reputation_changed_at", "reputation_since"])
        organizations = _events(ip, previous, EventType.IP_REPUTATION_RESUMED, reason, now, actor=actor)
        if len(organizations) == 1:  # a dedicated IP: its organization's audit log says who lifted it
            audit_record(
                organization=organizations[0],
                action="sending_ip.resumed",
                target=ip,
                target_label=ip.address,
                changes={"reputation_state": [previous, State.OK], "reason": reason},
            )
    pools_forget()
    return ip


def _events(
    ip: SendingIp,
    previous: str,
    event_type: str,
    reason: str,
    now: datetime,
    *,
    numbers: Numbers | None = None,
    actor: str = "",
) -> list[int]:
    details: dict[str, object] = {
        "address": ip.address,
        "ehlo_name": ip.ehlo_name,
        "state": ip.reputation_state,
        "previous_state": previous,
        "reason": reason,
        "actor": actor,
    }
    if numbers is not None:
        details |= {
            "deliveries": numbers.deliveries,
            "hard_bounces": numbers.hard_bounces,
            "complaints": numbers.complaints,
            "bounce_rate": numbers.bounce_rate,
            "complaint_rate": numbers.complaint_rate,
        }
    organizations = organizations_using(ip.address)
    organization_events(
        Event(organization_id=org_id, type=event_type, created_at=now, details=details) for org_id in organizations
    )
    return organizations
