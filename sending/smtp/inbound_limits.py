"""Messages per client address on the inbound MX: counted in the shared cache per address and fixed window, so
one sender cannot flood the organizations' routes (RFC 5321 §4.5.3.1 leaves such limits to the receiver; the
reply is a temporary 450 4.7.1 so a legitimate sender retries later).

Without the cache (Redis down) nothing is counted and nothing is refused (mail.cache_guard): the database alone
stores the mail."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from mail.cache_guard import cache_unavailable

TOO_MANY = "450 4.7.1 Too many messages from your address; try again later"


def _key(ip: str) -> str:
    window = settings.POSTWERK_INBOUND_MESSAGES_WINDOW
    return f"inbound-messages:{ip}:{int(time.time()) // window}"


def over_limit(ip: str | None) -> bool:
    limit = settings.POSTWERK_INBOUND_MESSAGES_PER_IP
    if not ip or limit <= 0:
        return False
    try:
        return int(cache.get(_key(ip)) or 0) >= limit
    except Exception as exc:
        cache_unavailable("inbound messages per address", exc)
        return False


def count_message(ip: str | None) -> None:
    if not ip or settings.POSTWERK_INBOUND_MESSAGES_PER_IP <= 0:
        return
    key = _key(ip)
    try:
        cache.add(key, 0, timeout=settings.POSTWERK_INBOUND_MESSAGES_WINDOW * 2)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=settings.POSTWERK_INBOUND_MESSAGES_WINDOW * 2)
    except Exception as exc:
        cache_unavailable("inbound messages per address", exc)


def reset(ip: str) -> None:
    cache.delete(_key(ip))
