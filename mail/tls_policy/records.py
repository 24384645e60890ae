"""TXT lookups of the policy discovery records (`_mta-sts.<domain>`, `_smtp._tls.<domain>`), cached by TTL."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import dns.exception
import dns.resolver
from django.conf import settings

from mail import dns as mail_dns

_cache: dict[str, tuple[float, TxtAnswer]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class TxtAnswer:
    records: list[str]  # each record's strings joined (RFC 7208 §3.3 style), empty: none published
    error: str = ""  # the lookup failed (timeout, SERVFAIL): nothing is known


def clear_caches() -> None:
    with _lock:
        _cache.clear()


def txt(name: str) -> TxtAnswer:
    name = name.lower().rstrip(".")
    with _lock:
        hit = _cache.get(name)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    ttl: float = mail_dns.NEGATIVE_TTL
    try:
        answer = mail_dns.resolver().resolve(name, "TXT", search=False)
        found = TxtAnswer([b"".join(r.strings).decode("utf-8", "replace") for r in answer])
        if answer.rrset is not None:
            ttl = answer.rrset.ttl
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        found = TxtAnswer([])
    except dns.exception.DNSException as exc:
        return TxtAnswer([], error=f"DNS lookup of {name} TXT failed: {exc}")
    ttl = max(0.0, min(float(ttl), float(settings.POSTWERK_MX_CACHE_MAX_TTL)))
    if ttl:
        with _lock:
            _cache[name] = (time.monotonic() + ttl, found)
    return found
