"""Sender domains: creating them with their DKIM key, and what their owners must publish."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Organization
from mail.addresses import domain_matches
from mail.crypto import encrypt
from mail.dkim_keys import generate_ed25519_keypair, generate_rsa_keypair
from mail.errors import PostwerkError
from sending.domains.checks.records import expected_records
from sending.domains.checks.spec import DkimKeySpec, DomainSpec
from sending.domains.platform_names import require_platform_names
from sending.models import FINAL_STATES, DkimKey, Domain, Recipient
from sending.return_path import dmarc_rua


class DomainError(PostwerkError, ValueError):
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
def domain_get_or_create(
    *, organization: Organization, name: str, ed25519: bool = False, return_path_subdomain: str = ""
) -> tuple[Domain, bool]:
    """The organization's domain, created with a DKIM key waiting for its DNS record; another organization's
    domain is refused. `ed25519` adds a second key for dual signing (RFC 8463)."""
    ascii_name = normalize_domain(name)
    domain = Domain.objects.select_for_update().filter(name=ascii_name).first()
    if domain is not None and domain.organization_id != organization.pk:
        raise DomainError(f"{ascii_name} belongs to another organization.")
    created = domain is None
    if created:
        domain = Domain.objects.create(
            organization=organization, name=ascii_name, return_path_subdomain=_label(return_path_subdomain)
        )
        audit_record(
            organization=organization,
            action="domain.created",
            target=domain,
            changes={"name": ascii_name, "ed25519": ed25519, "return_path_subdomain": domain.return_path_subdomain},
        )
    live = DkimKey.objects.filter(domain=domain).exclude(state=DkimKey.State.RETIRED)
    if not live.filter(algorithm=DkimKey.Algorithm.RSA).exists():
        dkim_key_create(domain=domain)
    if ed25519 and not live.filter(algorithm=DkimKey.Algorithm.ED25519).exists():
        dkim_key_create(domain=domain, algorithm=DkimKey.Algorithm.ED25519)
    return domain, created


def _label(value: str) -> str:
    value = (value or "").strip().lower()
    if value and not (len(value) <= 63 and value.replace("-", "").isalnum() and value[0] != "-" and value[-1] != "-"):
        raise DomainError(f"{value!r} is not a valid subdomain label.")
    return value


def dkim_key_create(*, domain: Domain, algorithm: str = DkimKey.Algorithm.RSA) -> DkimKey:
    """A new key under a new selector. It starts `pending` and signs once its record is seen in DNS."""
    suffix = "e" if algorithm == DkimKey.Algorithm.ED25519 else ""
    base = f"{settings.POSTWERK_DKIM_SELECTOR_PREFIX}{timezone.now():%Y%m}{suffix}"
    selector, n = base, 1
    while DkimKey.objects.filter(domain=domain, selector=selector).exists():
        n += 1
        selector = f"{base}-{n}"
    pair = generate_ed25519_keypair() if algorithm == DkimKey.Algorithm.ED25519 else generate_rsa_keypair()
    return DkimKey.objects.create(
        domain=domain,
        selector=selector,
        algorithm=algorithm,
        private_key_encrypted=encrypt(pair.private_pem),
        public_key=pair.public_b64,
    )


@transaction.atomic
def domain_rotate_dkim(*, domain: Domain, algorithm: str = DkimKey.Algorithm.RSA) -> DkimKey:
    """Start a rotation: a new pending key. The old key keeps signing until the new record verifies."""
    Domain.objects.select_for_update().filter(pk=domain.pk).first()
    DkimKey.objects.filter(domain=domain, algorithm=algorithm, state=DkimKey.State.PENDING).delete()
    key = dkim_key_create(domain=domain, algorithm=algorithm)
    audit_record(
        organization=domain.organization_id,
        action="domain.dkim_rotated",
        target=domain,
        changes={"selector": key.selector, "algorithm": algorithm},
    )
    return key


class DomainInUse(DomainError):
    pass


@transaction.atomic
def domain_delete(*, domain: Domain) -> None:
    """Delete a domain once none of its mail is still waiting to leave; sent messages keep their history."""
    waiting = Recipient.objects.filter(message__domain=domain).exclude(state__in=FINAL_STATES)
    if waiting.exists():
        raise DomainInUse(f"{domain.name} still has messages waiting for delivery; delete it once they have left.")
    audit_record(organization=domain.organization_id, action="domain.deleted", target=domain)
    domain.delete()


def domain_spec(domain: Domain) -> DomainSpec:
    """What the DNS checks need to know about a domain, as plain values."""
    keys = domain.dkim_keys.exclude(state=DkimKey.State.RETIRED).order_by("created_at")
    return DomainSpec(
        name=domain.name,
        verification_token=domain.verification_token,
        dkim_keys=[DkimKeySpec(k.selector, k.algorithm, k.public_key) for k in keys],  # type: ignore[arg-type]
        return_path_host=domain.return_path_host,
        platform_return_path_target=settings.POSTWERK_RETURN_PATH_DOMAIN,
        platform_mx_hosts=list(settings.POSTWERK_INBOUND_MX_HOSTS),
        spf_include=settings.POSTWERK_SPF_INCLUDE or None,
        sending_ips=list(settings.POSTWERK_SENDING_IPS),
        dmarc_rua=dmarc_rua(domain),
        inbound_host=domain.inbound_host if domain.inbound_enabled else None,
    )


def dns_records(domain: Domain) -> list[dict[str, str]]:
    """The records to publish, each with its purpose and a note; `"publisher": "operator"` marks one the
    platform's operator publishes, not the domain's owner. Raises PlatformNamesNotSet while the platform's own
    names are not real domain names."""
    require_platform_names()
    records = []
    for r in expected_records(domain_spec(domain)):
        record = {"purpose": r.purpose, "type": r.type, "name": r.name, "value": r.value, "note": r.note}
        if r.publisher != "owner":
            record["publisher"] = r.publisher
        records.append(record)
    return records


def sender_domain(organization: Organization, address_domain: str) -> Domain | None:
    """The organization's Domain that may send as `address_domain`, or None."""
    candidates = Domain.objects.filter(organization=organization)
    labels = address_domain.lower().split(".")
    names = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    for domain in sorted(candidates.filter(name__in=names), key=lambda d: -len(d.name)):
        if domain_matches(address_domain, domain.name, allow_subdomains=domain.allow_subdomains):
            return domain
    return None
