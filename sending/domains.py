"""Sender domains: creating them with their DKIM key, and what their owners must publish."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization

from .addresses import domain_matches
from .crypto import encrypt
from .dkim_keys import generate_rsa_keypair
from .models import DkimKey, Domain


class DomainError(ValueError):
    pass


def normalize_domain(name: str) -> str:
    name = (name or "").strip().rstrip(".").lower()
    if not name or any(c in name for c in " \t\r\n@/"):
        raise DomainError(f"{name!r} is not a domain name.")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise DomainError(f"{name!r} is not a valid domain name: {exc}") from exc
    if "." not in ascii_name or len(ascii_name) > 253:
        raise DomainError(f"{name!r} is not a fully qualified domain name.")
    return ascii_name


@transaction.atomic
def domain_get_or_create(*, organization: Organization, name: str) -> tuple[Domain, bool]:
    """The organization's domain, created with an active DKIM key; another organization's is refused."""
    ascii_name = normalize_domain(name)
    domain = Domain.objects.select_for_update().filter(name=ascii_name).first()
    if domain is not None and domain.organization_id != organization.pk:
        raise DomainError(f"{ascii_name} belongs to another organization.")
    created = domain is None
    if created:
        domain = Domain.objects.create(organization=organization, name=ascii_name)
    if not domain.dkim_keys.filter(active=True).exists():
        dkim_key_create(domain=domain)
    return domain, created


def dkim_key_create(*, domain: Domain) -> DkimKey:
    base = f"{settings.POSTWERK_DKIM_SELECTOR_PREFIX}{timezone.now():%Y%m}"
    selector, n = base, 1
    while DkimKey.objects.filter(domain=domain, selector=selector).exists():
        n += 1
        selector = f"{base}{n}"
    pair = generate_rsa_keypair()
    return DkimKey.objects.create(
        domain=domain,
        selector=selector,
        private_key_encrypted=encrypt(pair.private_pem),
        public_key=pair.public_b64,
    )


def dns_records(domain: Domain) -> list[dict[str, str]]:
    """The records the domain's owner must publish (DKIM for now; SPF, DMARC and return-path come later)."""
    return [
        {"type": "TXT", "name": key.record_name, "value": key.record_value, "purpose": "dkim"}
        for key in domain.dkim_keys.filter(active=True).order_by("created_at")
    ]


def sender_domain(organization: Organization, address_domain: str) -> Domain | None:
    """The organization's Domain that may send as `address_domain`, or None."""
    candidates = Domain.objects.filter(organization=organization)
    labels = address_domain.lower().split(".")
    names = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    for domain in sorted(candidates.filter(name__in=names), key=lambda d: -len(d.name)):
        if domain_matches(address_domain, domain.name, allow_subdomains=domain.allow_subdomains):
            return domain
    return None
