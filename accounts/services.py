"""Writes for organizations and their keys."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record, diff
from accounts.models import ApiKey, Membership, Organization, SmtpCredential
from accounts.scopes import Scope, ScopeError, expanded, role_may_grant, scopes_clean
from accounts.secrets import generate_api_key, generate_ses_access_key, generate_smtp_credential, secret_matches
from mail.crypto import encrypt

# Recording every request's time would make each send a write; a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(seconds=60)


def organization_get_or_create(*, name: str) -> tuple[Organization, bool]:
    return Organization.objects.get_or_create(name=name)


DEFAULT_ROTATION_GRACE = timedelta(hours=24)
MAX_ROTATION_GRACE = timedelta(days=7)


def _key_view(api_key: ApiKey) -> dict:
    """What the audit log keeps of a key: never its secret or hash."""
    return {
        "name": api_key.name,
        "prefix": api_key.prefix,
        "scopes": api_key.scopes,
        "allowed_domains": api_key.allowed_domains,
        "allowed_streams": api_key.allowed_streams,
        "allowed_networks": api_key.allowed_networks,
        "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None,
    }


def member_role(organization: Organization, user) -> str | None:  # type: ignore[no-untyped-def]
    if user is None:
        return None
    return Membership.objects.filter(organization=organization, user=user).values_list("role", flat=True).first()


def _within(parent: ApiKey, *, scopes: list[str], domains: list[str], streams: list[str], networks: list[str],
            expires_at) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """A key made by a key: never more than its maker (scopes, limits, lifetime)."""
    beyond = sorted(expanded(scopes) - expanded(parent.scopes))
    if beyond:
        raise ScopeError(f"This key cannot give scopes it does not have: {', '.join(beyond)}.", forbidden=True)
    for field, mine, theirs in (
        ("domains", domains, parent.allowed_domains),
        ("streams", streams, parent.allowed_streams),
    ):
        if theirs and (not mine or set(mine) - set(theirs)):
            raise ScopeError(
                f"This key is limited to {', '.join(theirs)}; the new key must be too.", field, forbidden=True
            )
    if parent.allowed_networks:
        parents = [ipaddress.ip_network(n) for n in parent.allowed_networks]
        inside = [
            any(n.version == p.version and n.subnet_of(p) for p in parents)  # type: ignore[arg-type]
            for n in (ipaddress.ip_network(x) for x in networks)
        ]
        if not inside or not all(inside):
            raise ScopeError(
                f"This key is limited to {', '.join(parent.allowed_networks)}; the new key must be too.",
                "networks",
                forbidden=True,
            )
    if parent.expires_at and (expires_at is None or expires_at > parent.expires_at):
        raise ScopeError(
            f"This key expires at {parent.expires_at.isoformat()}; the new key must not outlive it.",
            "expires_at",
            forbidden=True,
        )


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    name: str,
    scopes: Iterable[str] = (Scope.FULL,),
    domains: Iterable[str] = (),
    streams: Iterable[str] = (),
    networks: Iterable[str] = (),
    expires_at=None,  # type: ignore[no-untyped-def]
    created_by=None,  # type: ignore[no-untyped-def]
    parent_key: ApiKey | None = None,
    sandbox: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which exists only in this return value. A sandbox key's mail
    goes to the built-in capture, never to a recipient's MX.

    `created_by`: the member making it in the dashboard; `parent_key`: the key making it over the API (the new
    key acts for the same member). Either way the new key never has more rights than its maker; without both
    it is an operator's key (provision, the admin). Raises ScopeError naming the field that is refused."""
    scopes = scopes_clean(scopes)
    domains = sorted({d.strip().lower() for d in domains if d.strip()})
    streams = sorted({s.strip() for s in streams if s.strip()})
    try:
        networks = _check_networks(list(networks))
    except ValueError as exc:
        raise ScopeError(str(exc), "networks") from exc
    if expires_at is not None and expires_at <= timezone.now():
        raise ScopeError("The expiry date must be in the future.", "expires_at")
    if ApiKey.objects.filter(organization=organization, name=name).exists():
        raise ScopeError("A key with this name exists.", "name")
    member_bound = False
    if parent_key is not None:
        _within(parent_key, scopes=scopes, domains=domains, streams=streams, networks=networks, expires_at=expires_at)
        created_by, member_bound = parent_key.created_by, parent_key.member_bound
    elif created_by is not None:
        member_bound = True
    if member_bound:
        role = member_role(organization, created_by)
        refused = role_may_grant(role, scopes)
        if refused:
            raise ScopeError(
                f"A member with the role {role or 'none'} cannot give: {', '.join(refused)}.", forbidden=True
            )
    key, prefix, key_hash = generate_api_key()
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        scopes=scopes,
        allowed_domains=domains,
        allowed_streams=streams,
        allowed_networks=networks,
        expires_at=expires_at,
        created_by=created_by,
        member_bound=member_bound,
        sandbox=sandbox,
    )
    audit_record(organization=organization, action="api_key.created", target=api_key, changes=_key_view(api_key))
    return api_key, key


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, grace: timedelta = DEFAULT_ROTATION_GRACE) -> tuple[ApiKey, str]:
    """A new secret (same prefix); the current one keeps working for `grace` (0: stops at once), so
    applications can be redeployed with the new one without a failed request. The secret before that, if still
    in its grace, stops now: at most two secrets work at any time."""
    if grace < timedelta(0) or grace > MAX_ROTATION_GRACE:
        raise ScopeError(f"The grace period is 0 to {int(MAX_ROTATION_GRACE.total_seconds())} seconds.", "grace")
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        raise ScopeError("A revoked key cannot be rotated.", "key")
    now = timezone.now()
    key, _, key_hash = generate_api_key(api_key.prefix)
    api_key.previous_key_hash = api_key.key_hash if grace else ""
    api_key.previous_valid_until = now + grace if grace else None
    api_key.key_hash, api_key.rotated_at = key_hash, now
    api_key.save(update_fields=["previous_key_hash", "previous_valid_until", "key_hash", "rotated_at"])
    audit_record(
        organization=api_key.organization_id,
        action="api_key.rotated",
        target=api_key,
        changes={"old_secret_valid_until": api_key.previous_valid_until},
    )
    return api_key, key


def _revoke(secret: ApiKey | SmtpCredential) -> None:
    if secret.revoked_at is None:
        secret.revoked_at = timezone.now()
        secret.save(update_fields=["revoked_at"])
        kind = "api_key" if isinstance(secret, ApiKey) else "smtp_credential"
        audit_record(organization=secret.organization_id, action=f"{kind}.revoked", target=secret)


def _touch(secret: ApiKey | SmtpCredential) -> None:
    now = timezone.now()
    if secret.last_used_at is None or now - secret.last_used_at > LAST_USED_PRECISION:
        type(secret).objects.filter(pk=secret.pk).update(last_used_at=now)
        secret.last_used_at = now


@transaction.atomic
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
    audit_record(
        organization=organization,
        action="smtp_credential.created",
        target=credential,
        changes={
            "name": name,
            "username": username,
            "allowed_domains": sorted(d.name for d in domains),
            "allowed_networks": credential.allowed_networks,
        },
    )
    return credential, password


@transaction.atomic
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
    if credential.allowed_networks and not ip_allowed(peer_ip, credential.allowed_networks):
        return None
    _touch(credential)
    return credential


def smtp_credential_for_network(peer_ip: str | None) -> SmtpCredential | None:
    """The credential a trusted network submits as without AUTH (POSTWERK_SMTP_TRUSTED_NETWORKS), or None.

    For hosts the operator vouches for, such as a Postfix smarthost or a load generator that cannot AUTH; the
    credential's domain and network restrictions still apply, and a revoked one stops working."""
    for entry in settings.POSTWERK_SMTP_TRUSTED_NETWORKS:
        network, _, username = entry.partition("=")
        if username and ip_allowed(peer_ip, [network]):
            credential = (
                SmtpCredential.objects.select_related("organization")
                .filter(username=username, revoked_at__isnull=True)
                .first()
            )
            if credential is not None and (
                not credential.allowed_networks or ip_allowed(peer_ip, credential.allowed_networks)
            ):
                return credential
    return None


def ip_allowed(peer_ip: str | None, networks: list[str]) -> bool:
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
    fields = ["hourly_limit", "daily_limit", "limit_action"]
    before = {f: getattr(organization, f) for f in fields}
    organization.hourly_limit, organization.daily_limit = hourly_limit, daily_limit
    organization.limit_action = limit_action
    with transaction.atomic():
        organization.save(update_fields=fields)
        changes = diff(before, {f: getattr(organization, f) for f in fields})
        if changes:
            audit_record(organization=organization, action="organization.limits_changed", target=organization,
                         changes=changes)  # fmt: skip
    return organization


@transaction.atomic
def ses_access_key_issue(*, api_key: ApiKey) -> tuple[str, str]:
    """Give a key an access key pair for the SES-compatible API, replacing one it had (that one stops at once).
    Returns (access key id, secret access key); the secret is shown once and kept only encrypted."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        raise ScopeError("A revoked key cannot get an SES access key.", "key")
    access_key_id, secret = generate_ses_access_key()
    replaced = api_key.ses_access_key_id
    api_key.ses_access_key_id, api_key.ses_secret_encrypted = access_key_id, encrypt(secret.encode())
    api_key.save(update_fields=["ses_access_key_id", "ses_secret_encrypted"])
    audit_record(
        organization=api_key.organization_id,
        action="api_key.ses_access_key_issued",
        target=api_key,
        changes={"ses_access_key_id": access_key_id, "replaced": replaced},
    )
    return access_key_id, secret
