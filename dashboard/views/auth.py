"""The entry points: `/` sends a member to their organization, login and logout, password change, errors."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy

from accounts.models import Membership

from ..access import ORG_SESSION_KEY
from ..security import apply_headers, security_headers
from .common import page


@security_headers
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("dashboard:login")
    memberships = list(Membership.objects.filter(user=request.user).order_by("organization__name"))
    remembered = request.session.get(ORG_SESSION_KEY)
    chosen = next((m for m in memberships if m.organization_id == remembered), None) or next(iter(memberships), None)
    if chosen is not None:
        return redirect("dashboard:overview", org_id=chosen.organization_id)
    if request.user.is_staff:
        return redirect("dashboard:queue")
    return page(request, "dashboard/no_organization.html")


login = security_headers(
    auth_views.LoginView.as_view(template_name="dashboard/login.html", redirect_authenticated_user=True)
)
logout = security_headers(auth_views.LogoutView.as_view())
password_change = security_headers(
    auth_views.PasswordChangeView.as_view(
        template_name="dashboard/password_change.html", success_url=reverse_lazy("dashboard:home")
    )
)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Shown instead of Django's technical page when a form's CSRF token is missing or stale."""
    return apply_headers(render(request, "dashboard/csrf_failure.html", {"reason": reason}, status=403))
