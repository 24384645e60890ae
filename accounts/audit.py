"""The audit log: who changed what in an organization, when and from where.

Services call `audit_record(...)` next to the change they make (inside its transaction, so a change and its
entry are committed together or not at all). Who is acting is known at the entry point, not in the service:
the web middleware (`AuditActorMiddleware`) remembers the request (a dashboard or admin session), the API's key
authentication names the key, and a management command wraps its work in `acting_as(Actor.system(...))`. These
live in a context variable (per thread and per asyncio task), so services need no `actor` argument threaded
through every caller; `audit_record(actor=...)` still takes one explicitly when a caller knows better.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models
from django.http import HttpRequest

from accounts.models import ApiKey, AuditEntry, Organization

ActorType = AuditEntry.ActorType


@dataclass(frozen=True)
class Actor:
    type: str
    label: str
    user: Any = None  # a user model instance
    api_key: ApiKey | None = None
    ip: str | None = None

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(ActorType.SYSTEM, label[:200])

    @classmethod
    def for_key(cls, api_key: ApiKey, ip: str | None) -> Actor:
        return cls(ActorType.API_KEY, f"API key {api_key.name} ({api_key.prefix}…)"[:200], None, api_key, ip)

    @classmethod
    def for_user(cls, user: Any, ip: str | None) -> Actor:
        return cls(ActorType.USER, user.get_username()[:200], user, None, ip)


_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)
_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)


def request_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind the proxy POSTWERK_LOGIN_TRUST_X_FORWARDED_FOR trusts, the
    last X-Forwarded-For entry (the one the proxy appended, which a client cannot forge)."""
    address = request.META.get("REMOTE_ADDR", "")
    if settings.POSTWERK_LOGIN_TRUST_X_FORWARDED_FOR:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if forwarded:
            address = forwarded[-1]
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    """Everything recorded inside is by `actor` (a management command, the API's key)."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def actor_set(actor: Actor) -> None:
    """Name the actor for the rest of this request (the API's authentication; the middleware resets it)."""
    _actor.set(actor)


def current_actor() -> Actor:
    actor = _actor.get()
    if actor is not None:
        return actor
    request = _request.get()
    if request is not None:
        user = getattr(request, "user", None)
        ip = request_ip(request)
        if user is not None and user.is_authenticated:
            return Actor.for_user(user, ip)
        return Actor(ActorType.SYSTEM, "anonymous web request", ip=ip)
    return Actor.system("system")


class AuditActorMiddleware:
    """Remembers the request for `current_actor` and forgets it (and any actor named during it) afterwards."""

    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        request_token, actor_token = _request.set(request), _actor.set(None)
        try:
            return self.get_response(request)
        finally:
            _actor.reset(actor_token)
            _request.reset(request_token)


def _jsonable(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # datetimes, UUIDs, decimals: as text, exactly as shown


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [before, after]} for the fields that changed."""
    return {k: [before.get(k), after.get(k)] for k in after if before.get(k) != after.get(k)}


def audit_record(
    *,
    organization: Organization | int,
    action: str,
    target: models.Model | None = None,
    target_label: str | None = None,
    changes: dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> AuditEntry:
    """Record one change. `action` is `<thing>.<verb>` (api_key.created, domain.dkim_rotated...); `changes` is
    {field: [before, after]} for an update, the new values for a creation, counts for a bulk action."""
    actor = actor or current_actor()
    user = actor.user
    if user is None and actor.api_key is not None and actor.api_key.created_by_id:
        user_id = actor.api_key.created_by_id  # the member the key acts for
    else:
        user_id = getattr(user, "pk", None)
    return AuditEntry.objects.create(
        organization_id=organization if isinstance(organization, int) else organization.pk,
        actor_type=actor.type,
        user_id=user_id,
        api_key=actor.api_key,
        actor=actor.label,
        ip=actor.ip,
        action=action,
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target=(target_label if target_label is not None else str(target) if target is not None else "")[:300],
        changes=_jsonable(changes or {}),
    )
