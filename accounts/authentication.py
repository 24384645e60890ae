"""`Authorization: Bearer <api key>` for the REST API."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from accounts.models import ApiKey, Organization
from accounts.secrets import parse_api_key_prefix, secret_matches
from accounts.services import api_key_touch


@dataclass(frozen=True)
class ApiClient:
    """Who is calling: views scope every query to `request.user.organization`."""

    organization: Organization
    api_key: ApiKey
    is_authenticated: bool = True


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):  # type: ignore[no-untyped-def]
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not token.strip():
            raise exceptions.AuthenticationFailed("Expected 'Authorization: Bearer <api key>'.")
        token = token.strip()
        prefix = parse_api_key_prefix(token)
        api_key = (
            ApiKey.objects.select_related("organization").filter(prefix=prefix, revoked_at__isnull=True).first()
            if prefix
            else None
        )
        if api_key is None or not secret_matches(token, api_key.key_hash):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        api_key_touch(api_key=api_key)
        return ApiClient(organization=api_key.organization, api_key=api_key), api_key

    def authenticate_header(self, request):  # type: ignore[no-untyped-def]
        return self.keyword
