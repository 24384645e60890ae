"""Single sign-on's two URLs (mozilla-django-oidc's views): 404 unless POSTWERK_OIDC_CLIENT_ID is set."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from dashboard.security import security_headers


def _when_enabled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not settings.POSTWERK_OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        return view(request, *args, **kwargs)

    return security_headers(wrapper)


sso_start = _when_enabled(OIDCAuthenticationRequestView.as_view())
sso_callback = _when_enabled(OIDCAuthenticationCallbackView.as_view())
