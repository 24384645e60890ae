"""The organization's reputation: every sending scope with its numbers, the thresholds in force and its recent
history, and the platform's and its domains' blocklist listings. Owners and admins may resume a key or
credential that their own stricter thresholds paused, and set those thresholds; everything else paused is the
operators' to resume (sending.reputation.rates decides both, as it does for the API)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from dashboard.access import org_view
from dashboard.forms import ReputationActionForm, ReputationThresholdsForm
from dashboard.selectors import reputation_scopes
from dashboard.templatetags.dashboard_format import SCOPE_LABELS
from dashboard.views.common import actor_name, page
from sending.models import Reputation, ReputationState
from sending.reputation.blocklists import listings_for
from sending.reputation.rates import (
    ResumeNotAllowed,
    ThresholdError,
    platform_thresholds,
    reputation_recompute_scope,
    reputation_resume,
    reputation_thresholds_set,
)


def _title(reputation: Reputation) -> str:
    name = getattr(reputation, "scope_name", "") or reputation.scope_id
    return f"{SCOPE_LABELS.get(reputation.scope, reputation.scope)} {name}"


def _render(
    request: HttpRequest,
    *,
    error: str = "",
    error_scope: int | None = None,
    bound: ReputationThresholdsForm | None = None,
    status: int = 200,
) -> HttpResponse:
    org = request.organization
    platform = platform_thresholds()
    scopes = reputation_scopes(org)
    for rep in scopes:
        if rep.breaker:  # type: ignore[attr-defined]
            rep.form = (  # type: ignore[attr-defined]
                bound
                if bound is not None and bound.prefix == f"t{rep.pk}"
                else ReputationThresholdsForm(
                    prefix=f"t{rep.pk}", platform=platform, initial=ReputationThresholdsForm.initial_for(rep)
                )
            )
    return page(
        request,
        "dashboard/reputation.html",
        {
            "section": "reputation",
            "scopes": scopes,
            "platform": platform,
            "min_deliveries": settings.POSTWERK_REPUTATION_MIN_DELIVERIES,
            "listings": listings_for(org.pk),
            "reason_form": ReputationActionForm(),
            "error": error,
            "error_scope": error_scope,
        },
        status=status,
    )


def _scope(request: HttpRequest, reputation_id: int) -> Reputation:
    """One of the organization's scopes, named as reputations_for names them; another organization's is 404."""
    for rep in reputation_scopes(request.organization):
        if rep.pk == reputation_id:
            return rep
    raise Http404("No such sending scope.")


@org_view()
def reputation(request: HttpRequest) -> HttpResponse:
    return _render(request)


@org_view("admin", methods=("POST",))
def reputation_resume_view(request: HttpRequest, reputation_id: int) -> HttpResponse:
    rep = _scope(request, reputation_id)
    form = ReputationActionForm(request.POST)
    if not form.is_valid():
        return _render(request, error="Give a reason: it is kept in the history.", error_scope=rep.pk, status=400)
    if rep.state != ReputationState.PAUSED:
        return _render(request, error=f"{_title(rep)} is {rep.state}, not paused.", error_scope=rep.pk, status=409)
    try:
        reputation_resume(rep, actor=actor_name(request), reason=form.cleaned_data["reason"], staff=False)
    except ResumeNotAllowed as exc:
        return _render(request, error=f"{_title(rep)}: {exc}", error_scope=rep.pk, status=403)
    messages.success(
        request,
        f"Resumed {_title(rep)}: it sends again, counting only outcomes from now on. "
        "Mail held while it was paused stays held until you release it.",
    )
    return redirect("dashboard:reputation", org_id=request.organization.pk)


@org_view("admin", methods=("POST",))
def reputation_thresholds(request: HttpRequest, reputation_id: int) -> HttpResponse:
    rep = _scope(request, reputation_id)
    form = ReputationThresholdsForm(request.POST, prefix=f"t{rep.pk}", platform=platform_thresholds())
    try:
        if not form.is_valid():
            if rep.breaker:  # type: ignore[attr-defined]
                return _render(request, bound=form, error_scope=rep.pk, status=400)
            reputation_thresholds_set(rep, values={}, staff=False)  # refuses the scope, whatever was typed
        reputation_thresholds_set(rep, values=form.rates(), staff=False)
    except ThresholdError as exc:
        if exc.field in form.fields:
            form.add_error(exc.field, str(exc))
            return _render(request, bound=form, error_scope=rep.pk, status=400)
        # Not a key or credential: the organization and domain scopes guard the shared IPs (operators only).
        return _render(request, error=f"{_title(rep)}: {exc}", error_scope=rep.pk, status=403)
    reputation_recompute_scope(rep)  # the new thresholds apply now, not at the next beat
    messages.success(request, f"Thresholds of {_title(rep)} saved; its state is now {rep.state}.")
    return redirect("dashboard:reputation", org_id=request.organization.pk)
