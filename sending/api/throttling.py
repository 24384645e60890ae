"""API rate limiting per key: requests per second, counted in Django's cache (Redis in production, so every web
process on every host shares one count), answered with 429 and Retry-After. Without the cache the limit is not
enforced (mail.cache_guard): a 202 needs only the database."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from mail.cache_guard import cache_unavailable


def key_rate(api_key: ApiKey) -> int:
    """Requests per second for this key; 0 means unlimited."""
    return api_key.rate_limit if api_key.rate_limit is not None else settings.POSTWERK_API_RATE_LIMIT


class ApiKeyRateThrottle(BaseThrottle):
    """A fixed one-second window per key: one atomic increment per request (cache.incr is atomic on Redis).
    A fixed window lets a client send up to twice the rate across a window boundary; for a per-second limit
    that is harmless and costs one round trip instead of a sliding log's several."""

    def allow_request(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True  # unauthenticated views (schema, docs) and other authentication schemes
        rate = key_rate(api_key)
        if rate <= 0:
            return True
        now = time.time()
        second = int(now)
        key = f"apirate:{api_key.pk}:{second}"
        self._wait = (second + 1) - now
        try:
            return _count(key) <= rate
        except Exception as exc:  # the cache is down (Redis ConnectionError...): accept rather than answer 500
            cache_unavailable("API rate limit", exc)
            return True

    def wait(self) -> float:
        return max(getattr(self, "_wait", 1.0), 1.0)  # Retry-After is in whole seconds; never tell "0"


def _count(key: str) -> int:
    """This request's number in its one-second window."""
    backend = caches["default"]  # `cache` is a proxy to it
    if isinstance(backend, RedisCache):
        return _count_redis(backend, key)
    # add() creates the counter only if missing; incr() is then the one atomic step every request takes.
    if cache.add(key, 1, timeout=2):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=2)
        return 1


def _count_redis(backend: RedisCache, key: str) -> int:
    """The same on Redis in one round trip: INCR creates the counter at 1 if missing, EXPIRE bounds it (the key
    names its second, so resetting its life each time changes nothing). Django's add() + incr() would be three
    (SET NX, then EXISTS and INCRBY) on every request but a window's first."""
    full_key = backend.make_and_validate_key(key)
    client = backend._cache.get_client(full_key, write=True)
    pipeline = client.pipeline(transaction=False)
    pipeline.incr(full_key)
    pipeline.expire(full_key, 2)
    count, _ = pipeline.execute()
    return int(count)
