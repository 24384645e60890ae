"""Brute-force protection for the dashboard's log-in: failures counted per username and per client address in
Django's shared cache (Redis in production, so every web process on every host sees the same counts).

A username is locked after POSTWERK_LOGIN_MAX_FAILURES failures within one POSTWERK_LOGIN_FAILURE_WINDOW (guessing
one account's password); an address after POSTWERK_LOGIN_MAX_FAILURES_PER_IP (one machine trying many
accounts). While locked, the password is not even checked, so a right guess teaches the attacker nothing.
A successful log-in clears the username's count only: clearing the address's count would let an attacker
holding one valid account reset it between guesses at others.
"""

from __future__ import annotations

import ipaddress
import time
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

# Tests give each test its own prefix, so counts never carry over from one test (or run) to the next.
PREFIX = "login-fail"


def client_ip(request: HttpRequest) -> str:
    address = request.META.get("REMOTE_ADDR", "")
    if settings.POSTWERK_LOGIN_TRUST_X_FORWARDED_FOR:
        # The proxy appends the address it saw: the last entry is the one a client cannot forge.
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if forwarded:
            address = forwarded[-1]
    return ip_key(address)


def ip_key(address: str) -> str:
    """The address as failures are counted by it (an operator types one in to unlock it)."""
    address = address.strip()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:  # one IPv6 host usually owns a whole /64: count the network, not each address
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _window() -> tuple[int, float]:
    """The current fixed window (its number and its end): counts need only the cache's atomic increment, and
    a locked-out person can be told when to try again. At worst an attacker gets twice the limit across the
    boundary of two windows; over time, never more than the limit per window."""
    length = settings.POSTWERK_LOGIN_FAILURE_WINDOW
    number = int(time.time() // length)
    return number, (number + 1) * length


def _keys(ip: str, username: str) -> list[tuple[str, int]]:
    number, _ = _window()
    keys = [(f"{PREFIX}:ip:{ip}:{number}", settings.POSTWERK_LOGIN_MAX_FAILURES_PER_IP)] if ip else []
    if username.strip():
        # Lower-cased: Django's usernames are case-sensitive, but guesses at "Admin" and "admin" are one attack.
        user = username.strip().lower()[:200]
        keys.append((f"{PREFIX}:user:{user}:{number}", settings.POSTWERK_LOGIN_MAX_FAILURES))
    return keys


def locked_for(ip: str, username: str) -> int:
    """Seconds until a log-in for this username from this address may be tried again; 0 when it may now."""
    keys = _keys(ip, username)
    counts = cache.get_many([key for key, _ in keys])
    if any(int(counts.get(key) or 0) >= limit for key, limit in keys):
        return max(1, int(_window()[1] - time.time()) + 1)
    return 0


def record_failure(ip: str, username: str) -> None:
    ttl = max(1, int(_window()[1] - time.time()) + 1)
    for key, _ in _keys(ip, username):
        cache.add(key, 0, timeout=ttl)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=ttl)
        # Some backends' incr (the file cache's) rewrites the entry with the default timeout: set it again.
        cache.touch(key, ttl)


def record_success(username: str) -> None:
    cache.delete_many([key for key, _ in _keys("", username)])


def failures(ip: str, username: str) -> dict[str, tuple[int, int]]:
    """The current window's failures and limit, per "ip" and "username" given (what an operator looks at)."""
    keys = _keys(ip, username)
    kinds = (["ip"] if ip else []) + (["username"] if username.strip() else [])  # the order _keys uses
    counts = cache.get_many([key for key, _ in keys])
    return {kind: (int(counts.get(key) or 0), limit) for kind, (key, limit) in zip(kinds, keys, strict=True)}


def reset(ip: str, username: str) -> None:
    """Forget the current window's failures (an operator unlocking someone, and tests)."""
    cache.delete_many([key for key, _ in _keys(ip, username)])


def guard_login_view(view):  # type: ignore[no-untyped-def]
    """The same limits around another log-in view (the Django admin's), judged by its answer: a redirect
    after a POST is a success, a re-rendered form a failure."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):  # type: ignore[no-untyped-def]
        if request.method != "POST":
            return view(request, *args, **kwargs)
        ip, username = client_ip(request), request.POST.get("username", "")
        wait = locked_for(ip, username)
        if wait:
            response = HttpResponse(
                "Too many failed log-in attempts for this account or from your network. "
                f"Try again in {max(1, -(-wait // 60))} minutes.\n",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(wait)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code == 302 and request.user.is_authenticated:
            record_success(username)
        elif response.status_code == 200:
            record_failure(ip, username)
        return response

    return wrapper
