"""Who may see and do what in the dashboard: the organization from the URL, the member's role, and the
decorator every organization page goes through.

An organization the user is not a member of answers 404, exactly like an id that does not exist, so the
dashboard never says what exists elsewhere. A member whose role lacks the permission gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods

from accounts.models import Membership
from dashboard.security import security_headers

Role = Membership.Role

# view: every page that shows data; sending: domains and suppressions; secrets: API keys and SMTP credentials
# (developers build with them but never see or mint them: an owner or admin hands them out); admin: members
# and deleting domains.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER}),
    "sending": frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER}),
    "secrets": frozenset({Role.OWNER, Role.ADMIN}),
    "admin": frozenset({Role.OWNER, Role.ADMIN}),
}

ORG_SESSION_KEY = "dashboard_org"


def can(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]


def permissions_for(role: str) -> dict[str, bool]:
    return {name: role in roles for name, roles in PERMISSIONS.items()}


def membership_for(user, organization_id: int) -> Membership:  # type: ignore[no-untyped-def]
    membership = (
        Membership.objects.select_related("organization").filter(user=user, organization_id=organization_id).first()
    )
    if membership is None:
        raise Http404("No such organization.")
    return membership


def org_view(permission: str = "view", methods: tuple[str, ...] = ("GET",)) -> Callable:
    """A view of one organization: logged in, a member, the role allows `permission`, the method is allowed.
    The view gets `request.organization` and `request.membership`; URL kwarg `org_id` is consumed."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, org_id: int, *args: object, **kwargs: object) -> HttpResponse:
            membership = membership_for(request.user, org_id)
            if not can(membership.role, permission):
                raise PermissionDenied(f"Your role ({membership.role}) cannot do this.")
            request.organization = membership.organization  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            if request.session.get(ORG_SESSION_KEY) != membership.organization_id:
                request.session[ORG_SESSION_KEY] = membership.organization_id
            return view(request, *args, **kwargs)

        return security_headers(login_required(require_http_methods(list(methods))(wrapper)))

    return decorate


def staff_view(view: Callable[..., HttpResponse] | None = None, *, methods: tuple[str, ...] = ("GET",)) -> Callable:
    """An operator page: logged-in staff only (others get 403). `@staff_view` or `@staff_view(methods=...)`."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if not request.user.is_staff:
                raise PermissionDenied("Operators only.")
            return view(request, *args, **kwargs)

        return security_headers(login_required(require_http_methods(list(methods))(wrapper)))

    return decorate(view) if view is not None else decorate
