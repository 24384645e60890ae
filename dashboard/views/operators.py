"""Operator pages (staff only): the platform-wide queue with what is backed off or throttled, organizations with
their reputation, send limits, held mail and blocklist listings (where an operator edits limits and pauses or
resumes a sending scope with a reason), and unlocking a log-in locked out by too many failures."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from accounts.services import organization_limits_set
from dashboard import login_limits
from dashboard.access import staff_view
from dashboard.forms import LoginUnlockForm, OrganizationLimitsForm, ReputationActionForm
from dashboard.operator_reads import blocklist_overview, throttled_destinations
from dashboard.selectors import organizations_overview, queue_stats, reputation_history
from dashboard.templatetags.dashboard_format import SCOPE_LABELS
from dashboard.views.common import actor_name, page
from sending.models import Recipient, RecipientState, Reputation, ReputationState
from sending.reputation.blocklists import listings_for
from sending.reputation.rates import (
    reputation_pause,
    reputation_recompute,
    reputation_resume,
    reputations_for,
    thresholds_for,
)
from sending.reputation.send_limits import limits_for

log = logging.getLogger(__name__)


@staff_view
def queue(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    return page(
        request,
        "dashboard/queue.html",
        {"section": "queue", "stats": queue_stats(), "destinations": throttled_destinations(now), "now": now},
    )


@staff_view
def organizations(request: HttpRequest) -> HttpResponse:
    return page(
        request,
        "dashboard/ops_organizations.html",
        {"section": "ops_organizations", "rows": organizations_overview(), "blocklists": blocklist_overview()},
    )


def _logins_page(request: HttpRequest, form: LoginUnlockForm, status: int = 200) -> HttpResponse:
    found = None
    if form.is_bound and form.is_valid():
        ip = login_limits.ip_key(form.cleaned_data["ip"]) if form.cleaned_data["ip"] else ""
        username = form.cleaned_data["username"].strip()
        found = {
            "ip": ip,
            "username": username,
            "failures": login_limits.failures(ip, username),
            "locked_for": login_limits.locked_for(ip, username),
        }
    return page(
        request,
        "dashboard/ops_logins.html",
        {
            "section": "ops_logins",
            "form": form,
            "found": found,
            "window": settings.POSTWERK_LOGIN_FAILURE_WINDOW,
            "limits": (settings.POSTWERK_LOGIN_MAX_FAILURES, settings.POSTWERK_LOGIN_MAX_FAILURES_PER_IP),
        },
        status=status,
    )


@staff_view
def logins(request: HttpRequest) -> HttpResponse:
    """Look up a username's or an address's failures in the current window (the cache cannot be listed)."""
    form = LoginUnlockForm(request.GET or None)
    return _logins_page(request, form, status=400 if form.is_bound and not form.is_valid() else 200)


@staff_view(methods=("POST",))
def login_unlock(request: HttpRequest) -> HttpResponse:
    form = LoginUnlockForm(request.POST)
    if not form.is_valid():
        return _logins_page(request, form, status=400)
    ip = login_limits.ip_key(form.cleaned_data["ip"]) if form.cleaned_data["ip"] else ""
    username = form.cleaned_data["username"].strip()
    login_limits.reset(ip, username)
    who = " and ".join(part for part in (username and f"user {username}", ip and f"address {ip}") if part)
    log.warning("%s cleared the log-in failures of %s", actor_name(request), who)
    messages.success(request, f"Unlocked {who}: the failures of this window are forgotten.")
    query = urlencode({k: v for k, v in (("username", username), ("ip", form.cleaned_data["ip"] or "")) if v})
    return redirect(f"{reverse('dashboard:ops_logins')}?{query}")


def _detail(request: HttpRequest, organization: Organization, limits_form=None, status: int = 200) -> HttpResponse:  # type: ignore[no-untyped-def]
    reputations = reputations_for(organization.pk)
    for rep in reputations:
        rep.thresholds = thresholds_for(rep)  # type: ignore[attr-defined]
    titles = {rep.pk: _title(rep) for rep in reputations}
    history = reputation_history(organization)
    for snapshot in history:
        snapshot.scope_title = titles.get(snapshot.reputation_id, snapshot.reputation.scope)  # type: ignore[attr-defined]
    return page(
        request,
        "dashboard/ops_organization.html",
        {
            "section": "ops_organizations",
            "org": organization,
            "reputations": reputations,
            "history": history,
            "limits": limits_for(organization),
            "limit_action": organization.limit_action or settings.POSTWERK_LIMIT_ACTION,
            "limits_form": limits_form
            or OrganizationLimitsForm(
                initial={
                    "hourly_limit": organization.hourly_limit,
                    "daily_limit": organization.daily_limit,
                    "limit_action": organization.limit_action,
                }
            ),
            "reason_form": ReputationActionForm(),
            "listings": listings_for(organization.pk),
            "held": Recipient.objects.filter(organization=organization, state=RecipientState.HELD).count(),
            "defaults": {"hour": settings.POSTWERK_SEND_LIMIT_HOURLY, "day": settings.POSTWERK_SEND_LIMIT_DAILY},
        },
        status=status,
    )


def _title(reputation: Reputation) -> str:
    """ "API key billing-app": the scope in words, with the name reputations_for attached."""
    name = getattr(reputation, "scope_name", "") or reputation.scope_id
    return f"{SCOPE_LABELS.get(reputation.scope, reputation.scope)} {name}"


@staff_view
def organization_detail(request: HttpRequest, organization_id: int) -> HttpResponse:
    return _detail(request, get_object_or_404(Organization, pk=organization_id))


@staff_view(methods=("POST",))
def organization_limits(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = get_object_or_404(Organization, pk=organization_id)
    form = OrganizationLimitsForm(request.POST)
    if not form.is_valid():
        return _detail(request, organization, limits_form=form, status=400)
    organization_limits_set(organization=organization, **form.cleaned_data)
    messages.success(request, f"Send limits of {organization.name} saved.")
    return redirect("dashboard:ops_organization", organization_id=organization.pk)


@staff_view(methods=("POST",))
def reputation_recompute_now(request: HttpRequest, organization_id: int) -> HttpResponse:
    organization = get_object_or_404(Organization, pk=organization_id)
    changed = reputation_recompute(organization.pk)
    messages.success(request, f"Recomputed: {len(changed)} scope{'s' if len(changed) != 1 else ''} changed state.")
    return redirect("dashboard:ops_organization", organization_id=organization.pk)


@staff_view(methods=("POST",))
def reputation_action(request: HttpRequest, organization_id: int, reputation_id: int, action: str) -> HttpResponse:
    organization = get_object_or_404(Organization, pk=organization_id)
    if action not in ("pause", "resume"):
        raise Http404("No such action.")
    get_object_or_404(Reputation, organization=organization, pk=reputation_id)
    # From reputations_for, which names the scope (for the message below).
    reputation = next(r for r in reputations_for(organization.pk) if r.pk == reputation_id)
    form = ReputationActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason: it is kept in the history and sent with the event.")
        return redirect("dashboard:ops_organization", organization_id=organization.pk)
    reason = form.cleaned_data["reason"]
    if action == "pause":
        if reputation.state == ReputationState.PAUSED:
            messages.error(request, "That scope is already paused.")
        else:
            reputation_pause(reputation, actor=actor_name(request), reason=reason)
            messages.success(request, f"Paused {_title(reputation)}: new mail is held or refused.")
    else:
        if reputation.state != ReputationState.PAUSED:
            messages.error(request, "That scope is not paused.")
        else:
            reputation_resume(reputation, actor=actor_name(request), reason=reason, staff=True)
            messages.success(request, f"Resumed {_title(reputation)}. Its held mail stays held until released.")
    return redirect("dashboard:ops_organization", organization_id=organization.pk)
