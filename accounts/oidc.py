"""The OpenID Connect sign-in backend (mozilla-django-oidc): silent unless single sign-on is configured, and by
default it only signs in people who already have an account with the provider's verified email."""

from __future__ import annotations

from django.conf import settings
from mozilla_django_oidc.auth import OIDCAuthenticationBackend


class OidcBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):  # type: ignore[no-untyped-def]
        if not settings.POSTWERK_OIDC_ENABLED:
            return None  # password log-ins reach this backend too: nothing to say when SSO is off
        return super().authenticate(request, **kwargs)

    def verify_claims(self, claims: dict) -> bool:
        # An address the provider has not verified could be anyone's: never match an account by it.
        return bool(claims.get("email")) and claims.get("email_verified", True) is not False

    def filter_users_by_claims(self, claims: dict):  # type: ignore[no-untyped-def]
        return super().filter_users_by_claims(claims).filter(is_active=True)
