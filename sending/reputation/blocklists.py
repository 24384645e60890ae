"""Blocklist monitoring: the platform's sending IPs against DNSBLs, its sending domains against domain blocklists.

A DNSBL answers an A query for the reversed address under its zone (RFC 5782 §2.1: `4.3.2.1.zone` for 1.2.3.4,
32 reversed nibbles for IPv6) and a domain blocklist for `domain.zone` (§2.2): NXDOMAIN means not listed, an
address in 127.0.0.0/8 means listed (the code says why; a TXT record may explain). Spamhaus answers
127.255.255.x when it refuses the query (a public resolver, or over its free limit): that, an answer outside
127/8 (a resolver that rewrites NXDOMAIN) and any DNS failure are errors, and an error changes nothing stored but
the error itself. Lookups go through the project's resolver (POSTWERK_DNS_SERVERS).

An IP listing is the platform's, but it hurts every organization's mail, so a change (listed / delisted) is an
event for every organization; a domain's listing is an event for the organization that owns it.
"""

from __future__ import annotations

import ipaddress
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import dns.exception
import dns.resolver
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mail.dns import resolver
from sending.delivery.pools import organizations_using, visible_pools
from sending.models import BlocklistListing, Domain, Event, EventType, IpPool, SendingIp
from sending.states import organization_event, organization_events

log = logging.getLogger(__name__)

LISTED, CLEAR, ERROR = "listed", "clear", "error"
_LOOKUP_THREADS = 8


@dataclass(frozen=True)
class Answer:
    status: str  # listed, clear or error
    codes: list[str] = field(default_factory=list)
    reason: str = ""
    error: str = ""


@dataclass(frozen=True)
class Target:
    kind: str  # BlocklistListing.Kind
    target: str
    zone: str
    domain: Domain | None = None


def query_name(kind: str, target: str, zone: str) -> str:
    """The name to look up: reversed octets (IPv4) or nibbles (IPv6) of an address, or the domain, under the zone."""
    zone = zone.strip().rstrip(".")
    if kind == BlocklistListing.Kind.DOMAIN:
        return f"{target.rstrip('.')}.{zone}"
    address = ipaddress.ip_address(target)
    if address.version == 4:
        return ".".join(reversed(str(address).split("."))) + "." + zone
    return ".".join(reversed(address.exploded.replace(":", ""))) + "." + zone


def lookup(name: str) -> Answer:
    """What the zone says about one name."""
    try:
        answer = resolver().resolve(name, "A", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Answer(CLEAR)
    except dns.exception.DNSException as exc:
        return Answer(ERROR, error=f"lookup of {name} failed: {exc}"[:300])
    codes = sorted(r.address for r in answer)
    refused = [c for c in codes if c.startswith("127.255.255.")]
    if refused:
        return Answer(
            ERROR, codes, error=f"the zone refused the query ({', '.join(refused)}): use a resolver of your own"
        )
    if not all(ipaddress.ip_address(c) in ipaddress.ip_network("127.0.0.0/8") for c in codes):
        return Answer(
            ERROR, codes, error=f"answer outside 127.0.0.0/8 ({', '.join(codes)}): the resolver rewrites NXDOMAIN"
        )
    return Answer(LISTED, codes, reason=_explanation(name))


def _explanation(name: str) -> str:
    try:
        answer = resolver().resolve(name, "TXT", search=False)
    except dns.exception.DNSException:
        return ""
    return " ".join(b"".join(r.strings).decode("utf-8", "replace") for r in answer)[:2000]


def sending_ips() -> list[str]:
    """POSTWERK_SENDING_IPS and every enabled IP of a pool (sending.delivery.pools), each once."""
    addresses = []
    for ip in settings.POSTWERK_SENDING_IPS:
        try:
            addresses.append(str(ipaddress.ip_address(ip.strip())))
        except ValueError:
            log.warning("POSTWERK_SENDING_IPS: %r is not an address; not checked against blocklists", ip)
    addresses += SendingIp.objects.filter(enabled=True).order_by("address").values_list("address", flat=True)
    return list(dict.fromkeys(addresses))


def visible_ips(organization_id: int) -> list[str]:
    """The IPs an organization's mail may leave from: POSTWERK_SENDING_IPS (the host's), the default pool's and
    its own pools'. Another organization's dedicated IPs are that organization's business."""
    configured = [a for a in sending_ips() if not SendingIp.objects.filter(address=a).exists()]
    pooled = SendingIp.objects.filter(pool__in=IpPool.objects.filter(visible_pools(organization_id)))
    return configured + list(pooled.values_list("address", flat=True))


def targets() -> list[Target]:
    """Every configured sending IP in every DNSBL zone, every verified sending domain in every domain zone."""
    found = []
    for address in sending_ips():
        found += [Target(BlocklistListing.Kind.IP, address, zone) for zone in settings.POSTWERK_DNSBL_ZONES]
    for domain in Domain.objects.filter(verified_at__isnull=False).order_by("name"):
        found += [
            Target(BlocklistListing.Kind.DOMAIN, domain.name, zone, domain)
            for zone in settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES
        ]
    return found


def blocklists_check(now: datetime | None = None) -> list[tuple[BlocklistListing, Answer]]:
    """Check every target now, store the answers and raise events on changes; returns each row with its answer."""
    now = now or timezone.now()
    wanted = targets()
    with ThreadPoolExecutor(max_workers=_LOOKUP_THREADS) as pool:  # DNS only; the database stays in this thread
        answers = list(pool.map(lambda t: lookup(query_name(t.kind, t.target, t.zone)), wanted))
    return [(listing_store(t, a, now), a) for t, a in zip(wanted, answers, strict=True)]


def listing_store(target: Target, answer: Answer, now: datetime) -> BlocklistListing:
    with transaction.atomic():
        row, _ = BlocklistListing.objects.select_for_update().get_or_create(
            kind=target.kind, target=target.target, zone=target.zone, defaults={"domain": target.domain}
        )
        if answer.status == ERROR:
            row.error = answer.error[:300]
            row.save(update_fields=["error"])
            log.warning("blocklist check of %s on %s: %s", target.target, target.zone, answer.error)
            return row
        listed = answer.status == LISTED
        changed = listed != row.listed
        row.listed, row.answer, row.reason, row.checked_at, row.error = listed, answer.codes, answer.reason, now, ""
        if changed:
            row.listed_since = now if listed else None
        row.save()
        if changed:
            _events(row, now)
    return row


def _events(row: BlocklistListing, now: datetime) -> None:
    kind = EventType.BLOCKLIST_LISTED if row.listed else EventType.BLOCKLIST_DELISTED
    details = {"kind": row.kind, "target": row.target, "zone": row.zone, "codes": row.answer, "reason": row.reason}
    log.warning("%s: %s on %s %s", kind, row.target, row.zone, row.answer)
    if row.kind == BlocklistListing.Kind.DOMAIN:
        domain = row.domain
        if domain is not None:
            organization_event(domain.organization_id, kind, details, domain=domain, created_at=now)
        return
    organization_events(
        Event(organization_id=org_id, type=kind, created_at=now, details=details)
        for org_id in organizations_using(row.target)
    )


def listings_for(organization_id: int) -> list[BlocklistListing]:
    """What the organization's reputation shows: the platform's IP listings and its own domains', listed first.
    Rows of IPs or zones no longer configured are left out."""
    ips = Q(
        kind=BlocklistListing.Kind.IP,
        target__in=visible_ips(organization_id),
        zone__in=settings.POSTWERK_DNSBL_ZONES,
    )
    domains = Q(
        kind=BlocklistListing.Kind.DOMAIN,
        domain__organization_id=organization_id,
        zone__in=settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES,
    )
    return list(
        BlocklistListing.objects.filter(ips | domains)
        .select_related("domain")
        .order_by("-listed", "kind", "target", "zone")
    )
