"""Scopes on the API: every view says what it needs, and a key lacking it gets 403 naming the scope.

A view declares `required_scope`, one `accounts.scopes.Scope` for all its methods or a dict from HTTP method to
scope (`{"GET": Scope.MESSAGES_READ, "POST": Scope.SEND}`; HEAD and OPTIONS take GET's). This class is the
API's default permission (settings.REST_FRAMEWORK), so a new view is checked without doing anything; a view
that declares nothing is refused to everyone (403 `scope_not_declared`), and the tenant-isolation test
(tests/security/test_tenant_isolation.py) fails for it, so it cannot ship by accident.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, IsAuthenticated

from accounts.models import ApiKey
from accounts.scopes import Scope, key_allows, role_allows
from sending.api.exceptions import ApiError


def required_scope(view: object, method: str) -> str | None:
    declared = getattr(view, "required_scope", None)
    if isinstance(declared, dict):
        scope = declared.get(method.upper())
        if scope is None and method.upper() in ("HEAD", "OPTIONS"):
            scope = declared.get("GET")
        return scope
    return declared


class ScopeRequired(IsAuthenticated):
    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if not super().has_permission(request, view):
            return False  # DRF answers 401 (no or bad key)
        api_key = request.auth
        scope = required_scope(view, request.method)
        if scope is None or scope not in Scope.values:
            raise ApiError(
                403, "This endpoint declares no scope; it is refused to every key.", code="scope_not_declared"
            )
        scope = Scope(scope).value  # the plain string, in messages and bodies
        if not isinstance(api_key, ApiKey):
            raise ApiError(403, "Only API keys may call this endpoint.", code="forbidden")
        if not key_allows(api_key.scopes, scope):
            raise ApiError(
                403,
                f"This API key lacks the scope {scope!r}.",
                code="missing_scope",
                required_scope=scope,
                key_scopes=api_key.scopes,
            )
        if api_key.member_bound:
            write = request.method not in SAFE_METHODS
            role = getattr(api_key, "creator_role", None)
            if not role_allows(role, scope, write=write):
                who = f"now has the role {role}" if role else "is no longer a member of this organization"
                raise ApiError(
                    403,
                    f"The member who created this API key {who}, which does not allow "
                    f"{'changing' if write else 'reading'} with the scope {scope!r}.",
                    code="role_forbids",
                    required_scope=scope,
                    creator_role=role,
                )
        return True
