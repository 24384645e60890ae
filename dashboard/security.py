"""Response headers for dashboard pages. Django's middleware already sends nosniff, Referrer-Policy,
X-Frame-Options DENY and Cross-Origin-Opener-Policy; this adds a Content-Security-Policy that allows only our
own scripts and styles (no inline script at all), and keeps pages out of shared caches."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

PAGE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# A message's HTML body: shown only inside a sandboxed iframe of our own page. No script, no plugin, nothing
# fetched from anywhere (remote images would tell the sender the message was opened), only inline styles.
MESSAGE_HTML_CSP = "; ".join(
    [
        "sandbox",
        "default-src 'none'",
        "img-src data:",
        "style-src 'unsafe-inline'",
        "font-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'self'",
    ]
)

PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


def apply_headers(response: HttpResponse, csp: str = PAGE_CSP) -> HttpResponse:
    response.setdefault("Content-Security-Policy", csp)
    response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    # Pages show addresses, message content and (once) secrets: never from a shared or back-button cache.
    add_never_cache_headers(response)
    return response


def security_headers(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        return apply_headers(view(request, *args, **kwargs))

    return wrapper
