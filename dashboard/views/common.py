"""What every dashboard page renders with: the organization, the member's role and permissions, the
organization switcher."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Membership
from dashboard.access import ORG_SESSION_KEY, permissions_for


def page(request: HttpRequest, template: str, context: dict | None = None, status: int = 200) -> HttpResponse:
    membership = getattr(request, "membership", None)
    if membership is None and request.user.is_authenticated:
        # Pages outside an organization (the operators' queue) keep the navigation of the last one visited.
        membership = (
            Membership.objects.select_related("organization")
            .filter(user=request.user, organization_id=request.session.get(ORG_SESSION_KEY))
            .first()
        )
    base = {
        "organization": membership.organization if membership else None,
        "membership": membership,
        "perms_": permissions_for(membership.role) if membership else {},
        "memberships": (
            Membership.objects.filter(user=request.user).select_related("organization").order_by("organization__name")
            if request.user.is_authenticated
            else []
        ),
    }
    return render(request, template, {**base, **(context or {})}, status=status)


def actor_name(request: HttpRequest) -> str:
    """How the dashboard signs what a person did (suppressions keep who added or lifted them)."""
    return f"user:{request.user.get_username()}"[:200]
