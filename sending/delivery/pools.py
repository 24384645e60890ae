"""Sending IPs and pools as operators manage them (the admin and `manage.py ips` call these), and who uses what.

A pool serves, most specific first: a sender domain, a stream (of one organization, or of any), an organization,
or everyone (the one default pool). An IP's EHLO name must be what its reverse DNS says, and resolve back to it
(forward-confirmed reverse DNS): receivers such as Gmail and Microsoft refuse or junk mail from addresses that
fail it, so `ip_dns_check` looks both ways through POSTWERK_DNS_SERVERS before an IP is used.
"""

from __future__ import annotations

import ipaddress
from datetime import date

import dns.exception
import dns.resolver
import dns.reversename
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from mail.dns import resolver
from mail.errors import PostwerkError
from sending.models import Domain, IpPool, IpProviderState, SendingIp, WarmupSchedule


class EgressError(PostwerkError, ValueError):
    """An operator's change that cannot be made; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- pools and IPs ------------------------------------------------------------------------------------------


def pool_create(
    *,
    name: str,
    organization: Organization | None = None,
    domain: Domain | None = None,
    stream: str = "",
    is_default: bool = False,
    when_exhausted: str = IpPool.WhenExhausted.WAIT,
) -> IpPool:
    if when_exhausted not in IpPool.WhenExhausted.values:
        raise EgressError("when_exhausted", f"one of {', '.join(IpPool.WhenExhausted.values)}")
    if domain is not None and organization is not None and domain.organization_id != organization.pk:
        raise EgressError("domain", f"{domain.name} belongs to another organization")
    if is_default and (organization or domain or stream):
        raise EgressError("is_default", "the default pool serves everyone: no organization, domain or stream")
    if IpPool.objects.filter(name=name).exists():
        raise EgressError("name", f"a pool named {name!r} exists")
    if is_default and IpPool.objects.filter(is_default=True).exists():
        raise EgressError("is_default", "there is a default pool already")
    return IpPool.objects.create(
        name=name,
        organization=organization or (domain.organization if domain else None),
        domain=domain,
        stream=stream,
        is_default=is_default,
        when_exhausted=when_exhausted,
    )


def schedule_create(*, name: str, volumes: list[int]) -> WarmupSchedule:
    if not volumes or any(not isinstance(v, int) or v <= 0 for v in volumes):
        raise EgressError("volumes", "one positive number of messages per day of the warm-up")
    if WarmupSchedule.objects.filter(name=name).exists():
        raise EgressError("name", f"a schedule named {name!r} exists")
    return WarmupSchedule.objects.create(name=name, volumes=volumes)


def ip_add(
    *,
    address: str,
    ehlo_name: str,
    pool: IpPool,
    warmup_started: date | None = None,
    schedule: WarmupSchedule | None = None,
    check_dns: bool = True,
) -> SendingIp:
    """Add a sending IP to a pool. `warmup_started` None: already warm. With `check_dns`, its reverse DNS must
    name `ehlo_name` and that name resolve back to it, else EgressError (operators may add it unchecked and fix
    DNS before use: the check result is kept and shown)."""
    try:
        address = str(ipaddress.ip_address(address.strip()))
    except ValueError as exc:
        raise EgressError("address", f"{address!r} is not an IP address") from exc
    ehlo_name = ehlo_name.strip().lower().rstrip(".")
    if not ehlo_name or "." not in ehlo_name:
        raise EgressError("ehlo_name", "a fully qualified host name (RFC 5321 §4.1.1.1)")
    if SendingIp.objects.filter(address=address).exists():
        raise EgressError("address", f"{address} is a sending IP already")
    ok, detail = ip_dns_check(address, ehlo_name)
    if check_dns and not ok:
        raise EgressError("ehlo_name", detail)
    return SendingIp.objects.create(
        address=address,
        ehlo_name=ehlo_name,
        pool=pool,
        warmup_started=warmup_started,
        schedule=schedule,
        dns_ok=ok,
        dns_detail=detail[:300],
        dns_checked_at=timezone.now(),
    )


def ip_dns_recheck(ip: SendingIp) -> SendingIp:
    ok, detail = ip_dns_check(ip.address, ip.ehlo_name)
    ip.dns_ok, ip.dns_detail, ip.dns_checked_at = ok, detail[:300], timezone.now()
    ip.save(update_fields=["dns_ok", "dns_detail", "dns_checked_at"])
    return ip


def ip_dns_check(address: str, ehlo_name: str) -> tuple[bool, str]:
    """Forward-confirmed reverse DNS: the address's PTR names `ehlo_name`, and `ehlo_name` resolves to the
    address. Returns (ok, why in words)."""
    reverse = dns.reversename.from_address(address)
    try:
        answer = resolver().resolve(reverse, "PTR", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return False, f"{address} has no reverse DNS (PTR at {reverse}); ask its provider to set it to {ehlo_name}"
    except dns.exception.DNSException as exc:
        return False, f"reverse DNS lookup of {address} failed: {exc}"
    names = sorted(str(r.target).rstrip(".").lower() for r in answer)
    if ehlo_name not in names:
        return False, f"{address}'s reverse DNS names {', '.join(names)}, not {ehlo_name}"
    rdtype = "AAAA" if ":" in address else "A"
    try:
        forward = resolver().resolve(ehlo_name, rdtype, search=False)
    except dns.exception.DNSException as exc:
        return False, f"{ehlo_name} does not resolve ({rdtype}): {exc}"
    if address not in {r.address for r in forward}:
        return False, f"{ehlo_name} resolves to {', '.join(sorted(r.address for r in forward))}, not {address}"
    return True, f"{address} <-> {ehlo_name}"


def ip_remove(address: str) -> None:
    with transaction.atomic():
        SendingIp.objects.filter(address=address).delete()
        IpProviderState.objects.filter(address=address).delete()


def provider_state_clear(address: str, provider: str) -> int:
    """Lift what a provider's reply set on an IP (an operator who has sorted it out with the provider)."""
    return IpProviderState.objects.filter(address=address, provider=provider).delete()[0]


# --- who uses what ------------------------------------------------------------------------------------------


def pools_of(organization_id: int) -> Q:
    """The pools whose mail is this organization's (its own, its domains', its streams')."""
    return Q(organization_id=organization_id) | Q(domain__organization_id=organization_id)


def visible_pools(organization_id: int) -> Q:
    """What an organization sees: its pools, and the shared default pool its other mail leaves by."""
    return pools_of(organization_id) | Q(is_default=True)


def organizations_using(address: str) -> list[int]:
    """Organizations whose mail may leave from this address: a dedicated pool's organization, else everyone (the
    default pool, a stream pool of any organization, or the host's own address "")."""
    ip = SendingIp.objects.filter(address=address).select_related("pool", "pool__domain").first() if address else None
    if ip is not None:
        pool = ip.pool
        owner = pool.organization_id or (pool.domain.organization_id if pool.domain else None)
        if owner is not None:
            return [owner]
    return list(Organization.objects.values_list("pk", flat=True))
