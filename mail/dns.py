"""DNS for delivery: MX routes (RFC 5321 §5.1, RFC 7505 null MX) and host addresses, cached by TTL."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename
from django.conf import settings

# NXDOMAIN and null-MX answers are final for a while, but not forever: a domain may be fixed soon after.
NEGATIVE_TTL = 300


class RouteStatus(StrEnum):
    OK = "ok"
    NULL_MX = "null_mx"
    NO_DOMAIN = "nxdomain"
    TEMPORARY = "temporary"


@dataclass(frozen=True)
class Route:
    status: RouteStatus
    hosts: list[str] = field(default_factory=list)  # MX host names, best preference first
    detail: str = ""
    implicit: bool = False  # no MX records: the domain itself is the host (RFC 5321 §5.1)
    # The MX answer as received, with its RRSIGs when the zone is signed: DANE needs the MX RRset to be
    # DNSSEC-validated (RFC 7672 §2.2.1), and this spares a second MX query (mail.tls_policy.dnssec).
    response: dns.message.Message | None = field(default=None, compare=False, repr=False)


_cache: dict[tuple[str, str], tuple[float, object]] = {}
_lock = threading.Lock()
_resolvers: dict[tuple, dns.resolver.Resolver] = {}


def clear_caches() -> None:
    with _lock:
        _cache.clear()
        _resolvers.clear()


def resolver(*, dnssec: bool = False) -> dns.resolver.Resolver:
    """The configured resolver; with `dnssec`, one whose queries ask for DNSSEC records (DO) and leave validating
    to us (CD: a validating upstream hands over even bogus data, which mail.tls_policy.dnssec then refuses)."""
    key = (tuple(settings.POSTWERK_DNS_SERVERS), settings.POSTWERK_DNS_TIMEOUT, dnssec)
    with _lock:
        found = _resolvers.get(key)
        if found is None:
            if settings.POSTWERK_DNS_SERVERS:
                found = dns.resolver.Resolver(configure=False)
                found.nameservers = [
                    dns.nameserver.Do53Nameserver(host, port) for host, port in settings.POSTWERK_DNS_SERVERS
                ]
            else:
                found = dns.resolver.Resolver()
            found.lifetime = settings.POSTWERK_DNS_TIMEOUT
            found.timeout = min(2.0, settings.POSTWERK_DNS_TIMEOUT)
            if dnssec:
                found.use_edns(0, dns.flags.DO, 1232)
                found.flags = dns.flags.RD | dns.flags.CD
            _resolvers[key] = found
        return found


def _cached(kind: str, name: str):  # type: ignore[no-untyped-def]
    with _lock:
        hit = _cache.get((kind, name))
    if hit and hit[0] > time.monotonic():
        return hit[1]
    return None


def _store(kind: str, name: str, value: object, ttl: float) -> None:
    ttl = max(0.0, min(float(ttl), float(settings.POSTWERK_MX_CACHE_MAX_TTL)))
    if ttl:
        with _lock:
            _cache[(kind, name)] = (time.monotonic() + ttl, value)


def mx_route(domain: str) -> Route:
    domain = domain.lower().rstrip(".")
    hit = _cached("mx", domain)
    if hit is not None:
        return hit  # type: ignore[return-value]
    route, ttl = _lookup_mx(domain)
    if route.status is not RouteStatus.TEMPORARY:
        _store("mx", domain, route, ttl)
    return route


def _lookup_mx(domain: str) -> tuple[Route, float]:
    try:
        answer = resolver(dnssec=settings.POSTWERK_DANE).resolve(domain, "MX", search=False)
    except dns.resolver.NXDOMAIN:
        return Route(RouteStatus.NO_DOMAIN, detail=f"{domain} does not exist (NXDOMAIN)"), NEGATIVE_TTL
    except dns.resolver.NoAnswer:
        # RFC 5321 §5.1: no MX records means the domain itself is the implicit MX, if it has an address.
        if host_addresses(domain):
            return Route(RouteStatus.OK, hosts=[domain], detail="no MX; using the domain's address", implicit=True), 300
        return Route(RouteStatus.NO_DOMAIN, detail=f"{domain} has neither MX nor address records"), NEGATIVE_TTL
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.YXDOMAIN) as exc:
        return Route(RouteStatus.TEMPORARY, detail=f"DNS lookup for {domain} failed: {exc}"), 0
    except dns.exception.DNSException as exc:
        return Route(RouteStatus.TEMPORARY, detail=f"DNS lookup for {domain} failed: {exc}"), 0
    records = list(answer)
    ttl = answer.rrset.ttl if answer.rrset is not None else 300
    # RFC 7505: a single MX of preference 0 and exchange "." says the domain accepts no mail.
    if any(str(r.exchange) == "." for r in records):
        return Route(RouteStatus.NULL_MX, detail=f"{domain} accepts no mail (null MX, RFC 7505)"), ttl
    # Equal preferences are shuffled so load spreads across a domain's peers (RFC 5321 §5.1).
    ordered = sorted(records, key=lambda r: (r.preference, random.random()))
    hosts = list(dict.fromkeys(str(r.exchange).rstrip(".").lower() for r in ordered))
    return Route(RouteStatus.OK, hosts=hosts, response=answer.response), ttl


def host_addresses(host: str) -> list[str]:
    """IPv4 then IPv6 addresses of an MX host; empty when it has none or the lookup failed."""
    host = host.lower().rstrip(".")
    hit = _cached("addr", host)
    if hit is not None:
        return hit  # type: ignore[return-value]
    addresses: list[str] = []
    ttl: float = NEGATIVE_TTL
    failed = False
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver().resolve(host, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException:
            failed = True
            continue
        addresses.extend(r.address for r in answer)
        if answer.rrset is not None:
            ttl = min(ttl, answer.rrset.ttl)
    if not failed:
        _store("addr", host, addresses, ttl)
    return addresses


def reverse_name(address: str) -> str:
    """The PTR name of an IP address ("" when it has none or the lookup failed), cached like the others."""
    hit = _cached("ptr", address)
    if hit is not None:
        return hit  # type: ignore[return-value]
    try:
        answer = resolver().resolve(dns.reversename.from_address(address), "PTR", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        _store("ptr", address, "", NEGATIVE_TTL)
        return ""
    except (dns.exception.DNSException, ValueError):
        return ""
    name = str(next(iter(answer)).target).rstrip(".").lower()
    _store("ptr", address, name, answer.rrset.ttl if answer.rrset is not None else 300)
    return name
