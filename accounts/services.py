"""Writes for organizations and their keys."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Organization, SmtpCredential
from accounts.secrets import generate_api_key, generate_smtp_credential, secret_matches

# Recording every request's time would make each send a write; a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(seconds=60)


def organization_get_or_create(*, name: str) -> tuple[Organization, bool]:
    return Organization.objects.get_or_create(name=name)


@transaction.atomic
def api_key_create(*, organization: Organization, name: str, sandbox: bool = False) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which exists only in this return value. A sandbox key's mail
    goes to the built-in capture, never to a recipient's MX."""
    key, prefix, key_hash = generate_api_key()
    api_key = ApiKey.objects.create(
        organization=organization, name=name, prefix=prefix, key_hash=key_hash, sandbox=sandbox
    )
    return api_key, key


def _revoke(secret: ApiKey | SmtpCredential) -> None:
    if secret.revoked_at is None:
        secret.revoked_at = timezone.now()
        secret.save(update_fields=["revoked_at"])


def _touch(secret: ApiKey | SmtpCredential) -> None:
    now = timezone.now()
    if secret.last_used_at is None or now - secret.last_used_at > LAST_USED_PRECISION:
        type(secret).objects.filter(pk=secret.pk).update(last_used_at=now)
        secret.last_used_at = now


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    _revoke(api_key)
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    _touch(api_key)


def _check_networks(networks: list[str]) -> list[str]:
    cleaned = []
    for item in networks:
        try:
            cleaned.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{item!r} is not a CIDR network") from exc
    return cleaned


@transaction.atomic
def smtp_credential_create(
    *,
    organization: Organization,
    name: str,
    domains: Iterable = (),
    networks: Iterable[str] = (),
    sandbox: bool = False,
) -> tuple[SmtpCredential, str]:
    """Create a credential and return it with its password, which exists only in this return value."""
    username, password, password_hash = generate_smtp_credential()
    credential = SmtpCredential.objects.create(
        organization=organization,
        name=name,
        username=username,
        password_hash=password_hash,
        allowed_networks=_check_networks(list(networks)),
        sandbox=sandbox,
    )
    domains = list(domains)
    if any(d.organization_id != organization.pk for d in domains):
        raise ValueError("a credential can only be limited to its own organization's domains")
    credential.allowed_domains.set(domains)
    return credential, password


def smtp_credential_revoke(*, credential: SmtpCredential) -> SmtpCredential:
    _revoke(credential)
    return credential


def smtp_credential_authenticate(*, username: str, password: str, peer_ip: str | None) -> SmtpCredential | None:
    """The active credential for this username and password, if the peer may use it; else None."""
    credential = (
        SmtpCredential.objects.select_related("organization").filter(username=username, revoked_at__isnull=True).first()
    )
    if credential is None or not secret_matches(password, credential.password_hash):
        return None
    if credential.allowed_networks and not _ip_allowed(peer_ip, credential.allowed_networks):
        return None
    _touch(credential)
    return credential


def smtp_credential_for_network(peer_ip: str | None) -> SmtpCredential | None:
    """The credential a trusted network submits as without AUTH (POSTWERK_SMTP_TRUSTED_NETWORKS), or None.

    For hosts the operator vouches for, such as a Postfix smarthost or a load generator that cannot AUTH; the
    credential's domain and network restrictions still apply, and a revoked one stops working."""
    for entry in settings.POSTWERK_SMTP_TRUSTED_NETWORKS:
        network, _, username = entry.partition("=")
        if username and _ip_allowed(peer_ip, [network]):
            credential = (
                SmtpCredential.objects.select_related("organization")
                .filter(username=username, revoked_at__isnull=True)
                .first()
            )
            if credential is not None and (
                not credential.allowed_networks or _ip_allowed(peer_ip, credential.allowed_networks)
            ):
                return credential
    return None


def _ip_allowed(peer_ip: str | None, networks: list[str]) -> bool:
    if not peer_ip:
        return False
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


def organization_limits_set(
    *, organization: Organization, hourly_limit: int | None, daily_limit: int | None, limit_action: str
) -> Organization:
    """An operator sets an organization's send limits (None: the platform default; 0: none) and what happens
    to mail over them ("": the platform default)."""
    if limit_action not in ("", *Organization.LimitAction.values):
        raise ValueError(f"limit_action: one of hold, reject or empty, not {limit_action!r}")
    for name, value in (("hourly_limit", hourly_limit), ("daily_limit", daily_limit)):
        if value is not None and value < 0:
            raise ValueError(f"{name}: 0 or more")
    organization.hourly_limit, organization.daily_limit = hourly_limit, daily_limit
    organization.limit_action = limit_action
    organization.save(update_fields=["hourly_limit", "daily_limit", "limit_action"])
    return organization
