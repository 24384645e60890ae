"""Brute-force protection for SMTP AUTH: failures counted per source IP and per username in the shared cache.

Without the cache (Redis down) nothing is counted and nobody is locked out (mail.cache_guard): submission
goes on, since the database alone checks the password and stores the message."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from mail.cache_guard import cache_unavailable


def _keys(ip: str | None, username: str | None) -> list[str]:
    keys = []
    if ip:
        keys.append(f"smtp-auth-fail:ip:{ip}")
    if username:
        keys.append(f"smtp-auth-fail:user:{username[:200]}")
    return keys


def failures(ip: str | None, username: str | None) -> int:
    keys = _keys(ip, username)
    try:
        counts = cache.get_many(keys) if keys else {}
    except Exception as exc:
        cache_unavailable("SMTP AUTH failure count", exc)
        return 0
    return max((int(v) for v in counts.values()), default=0)


def record_failure(ip: str | None, username: str | None) -> int:
    window = settings.POSTWERK_SMTP_AUTH_FAILURE_WINDOW
    worst = 0
    try:
        for key in _keys(ip, username):
            cache.add(key, 0, timeout=window)
            try:
                worst = max(worst, cache.incr(key))
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=window)
                worst = max(worst, 1)
    except Exception as exc:
        cache_unavailable("SMTP AUTH failure count", exc)
    return worst


def locked_out(ip: str | None, username: str | None) -> bool:
    return failures(ip, username) >= settings.POSTWERK_SMTP_AUTH_MAX_FAILURES


def delay_after(failure_count: int) -> float:
    """Seconds to wait before answering a failed attempt: free for typos, slower for guessing."""
    return 0.0 if failure_count <= 2 else min(float(failure_count - 2), 5.0)


def reset(ip: str | None, username: str | None) -> None:
    try:
        cache.delete_many(_keys(ip, username))
    except Exception as exc:
        cache_unavailable("SMTP AUTH failure count", exc)
