"""The DKIM keys delivery signs with: a domain's active keys, decrypted once per worker process.

Looked up once per domain every few seconds rather than once per message. A key activated by a rotation starts
signing within KEY_CACHE_SECONDS in other processes (its predecessor stays valid in DNS meanwhile); the process
that activates it forgets the domain at once.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

from .crypto import decrypt
from .models import DkimKey

KEY_CACHE_SECONDS = 10.0
_cache: dict[int | None, tuple[float, list[DkimKey]]] = {}
_lock = threading.Lock()


def active_keys(domain_id: int | None) -> list[DkimKey]:
    """The domain's active keys, newest first."""
    hit = _cache.get(domain_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    keys = list(
        DkimKey.objects.filter(domain_id=domain_id, state=DkimKey.State.ACTIVE)
        .select_related("domain")
        .order_by("-created_at")
    )
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[domain_id] = (time.monotonic() + KEY_CACHE_SECONDS, keys)
    return keys


def forget(domain_id: int | None = None) -> None:
    """Drop one domain's cached keys (all when None), after its keys changed."""
    with _lock:
        if domain_id is None:
            _cache.clear()
        else:
            _cache.pop(domain_id, None)


def private_key(key: DkimKey) -> bytes:
    return _decrypted(key.pk, key.private_key_encrypted)


@lru_cache(maxsize=256)
def _decrypted(key_id: int, encrypted: str) -> bytes:
    return decrypt(encrypted)
