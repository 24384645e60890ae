"""`Authorization: Bearer <api key>` for the REST API.

Every request reads the key from the database (one indexed query, with the creator's current role joined in):
no process keeps a copy, so a revocation, a rotation's end or a demotion of the key's creator takes effect at
once on every web process of every host."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts.audit import Actor, actor_set, request_ip
from accounts.models import ApiKey, Membership, Organization
from accounts.secrets import parse_api_key_prefix, secret_matches
from accounts.services import api_key_touch, ip_allowed


@dataclass(frozen=True)
class ApiClient:
    """Who is calling: views scope every query to `request.user.organization`."""

    organization: Organization
    api_key: ApiKey
    is_authenticated: bool = True


def active_keys() -> QuerySet[ApiKey]:
    """Unrevoked keys with their organization and their creator's current role (`creator_role`, which the
    scope check holds a member-bound key to): one query whichever secret (API key, SES access key) finds it."""
    creator_role = Membership.objects.filter(organization=OuterRef("organization"), user=OuterRef("created_by"))
    return (
        ApiKey.objects.select_related("organization")
        .annotate(creator_role=Subquery(creator_role.values("role")[:1]))
        .filter(revoked_at__isnull=True)
    )


def _key_for(token: str) -> ApiKey | None:
    """The active key this token is (its current secret, or its previous one within the rotation's grace)."""
    prefix = parse_api_key_prefix(token)
    if not prefix:
        return None
    api_key = active_keys().filter(prefix=prefix).first()
    if api_key is None:
        return None
    if secret_matches(token, api_key.key_hash):
        return api_key
    if (
        api_key.previous_key_hash
        and api_key.previous_valid_until is not None
        and api_key.previous_valid_until > timezone.now()
        and secret_matches(token, api_key.previous_key_hash)
    ):
        return api_key
    return None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):  # type: ignore[no-untyped-def]
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not token.strip():
            raise exceptions.AuthenticationFailed("Expected 'Authorization: Bearer <api key>'.")
        return self.token_authenticate(request, token.strip())

    def token_authenticate(self, request, token: str):  # type: ignore[no-untyped-def]
        """The caller of an API key given in any header (the compatible APIs carry it in their own)."""
        api_key = _key_for(token)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return api_key_admit(request, api_key)

    def authenticate_header(self, request):  # type: ignore[no-untyped-def]
        return self.keyword


def api_key_admit(request, api_key: ApiKey) -> tuple[ApiClient, ApiKey]:  # type: ignore[no-untyped-def]
    """The checks every request made with a found key passes, however it proved it holds the key (a bearer
    token, or an SES signature): not expired, from an allowed network; then its use is recorded and it is the
    audit log's actor. DRF's (user, auth) pair."""
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise exceptions.AuthenticationFailed(f"This API key expired at {api_key.expires_at.isoformat()}.")
    ip = request_ip(request)
    if api_key.allowed_networks and not ip_allowed(ip, api_key.allowed_networks):
        raise exceptions.PermissionDenied(
            f"This API key may be used only from {', '.join(api_key.allowed_networks)}.", code="network_not_allowed"
        )
    api_key_touch(api_key=api_key)
    actor_set(Actor.for_key(api_key, ip))
    return ApiClient(organization=api_key.organization, api_key=api_key), api_key
