"""The gate every signed-in request passes: a person with two-factor must have typed a code in this session, and
a member of an organization that requires two-factor must have enrolled, before any page (dashboard or admin)
is served. Only the pages that get them there, log-out and static files are open before that.

A middleware rather than a decorator, so that no page (the admin, a new view someone forgets to mark) can be
reached with the password alone. The API is not behind it: it authenticates with keys, never with sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from accounts.two_factor import has_two_factor, two_factor_required

OPEN_VIEWS = frozenset(
    {"dashboard:logout", "dashboard:two_factor_verify", "dashboard:two_factor", "dashboard:two_factor_confirm"}
)
OPEN_PREFIXES = ("/api/", "/t/", "/healthz", "/static/", "/oidc/")


class TwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> HttpResponse | None:  # type: ignore[no-untyped-def]
        user = request.user
        if not user.is_authenticated or request.path.startswith(OPEN_PREFIXES):
            return None
        match = request.resolver_match
        if match is not None and match.view_name in OPEN_VIEWS:
            return None
        if has_two_factor(user):
            if user.is_verified():  # type: ignore[attr-defined]  # set by django_otp's OTPMiddleware
                return None
            return redirect(f"{reverse('dashboard:two_factor_verify')}?{urlencode({'next': request.get_full_path()})}")
        if two_factor_required(user):
            return redirect("dashboard:two_factor")
        return None
