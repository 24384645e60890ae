"""Webhook endpoints: create, change, rotate the secret (with an overlap), disable. Secrets are shown once."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.audit import audit_record, diff
from accounts.models import Organization
from mail.crypto import decrypt, encrypt
from mail.errors import PostwerkError
from sending.models import Event, EventType, Stream, WebhookDelivery, WebhookEndpoint
from sending.states import organization_event
from sending.webhooks.signing import secret_new
from sending.webhooks.transport import TargetRefused, addresses_checked, target_parse


class EndpointError(PostwerkError, ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def url_check(url: str) -> str:
    """The URL as stored, or EndpointError: its scheme and every address its host has now must be allowed
    (checked again, and pinned, at every send)."""
    try:
        target = target_parse(url)
        addresses_checked(target.host)
    except TargetRefused as exc:
        raise EndpointError("url", str(exc)) from exc
    return url.strip()


def event_types_check(types: list[str]) -> list[str]:
    unknown = [t for t in types if t not in EventType.values]
    if unknown:
        raise EndpointError("event_types", f"Unknown event types: {', '.join(unknown)}.")
    return list(dict.fromkeys(types))


def payload_format_check(value: str) -> str:
    if value not in WebhookEndpoint.PayloadFormat.values:
        raise EndpointError("payload_format", f"One of {', '.join(WebhookEndpoint.PayloadFormat.values)}.")
    return value


def streams_check(organization_id: int, names: list[str]) -> list[str]:
    """Stream names an endpoint filters on: each one the organization's."""
    names = [n.strip().lower() for n in names]
    known = set(Stream.objects.filter(organization_id=organization_id, name__in=names).values_list("name", flat=True))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise EndpointError("streams", f"Unknown streams: {', '.join(unknown)}.")
    return list(dict.fromkeys(names))


def webhook_endpoint_create(
    *,
    organization: Organization,
    url: str,
    event_types: list[str],
    description: str = "",
    enabled: bool = True,
    streams: list[str] | None = None,
    payload_format: str = WebhookEndpoint.PayloadFormat.POSTWERK,
    purpose: str = "events",
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (the only time the secret is returned)."""
    url, event_types = url_check(url), event_types_check(event_types)
    payload_format = payload_format_check(payload_format)
    streams = streams_check(organization.pk, streams or [])
    secret = secret_new()
    with transaction.atomic():
        # Only events after this one are the endpoint's: it does not receive the organization's history.
        start = Event.objects.aggregate(last=Max("id"))["last"] or 0
        endpoint = WebhookEndpoint.objects.create(
            organization=organization,
            url=url,
            event_types=event_types,
            streams=streams,
            description=description,
            enabled=enabled,
            payload_format=payload_format,
            purpose=purpose,
            secret_encrypted=encrypt(secret.encode()),
            start_event_id=start,
        )
        audit_record(
            organization=organization,
            action="webhook.created",
            target=endpoint,
            target_label=url,
            changes={
                "url": url,
                "event_types": event_types,
                "description": description,
                "enabled": enabled,
                "payload_format": payload_format,
            },
        )
    return endpoint, secret


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **changes: object) -> WebhookEndpoint:
    """Change url, event_types, description or enabled. Enabling again forgets the failure history."""
    fields = ("url", "event_types", "description", "enabled", "payload_format")
    before = {f: getattr(endpoint, f) for f in fields}
    if "url" in changes:
        endpoint.url = url_check(str(changes["url"]))
    if "event_types" in changes:
        endpoint.event_types = event_types_check(list(changes["event_types"]))  # type: ignore[call-overload]
    if "streams" in changes:
        endpoint.streams = streams_check(endpoint.organization_id, list(changes["streams"]))  # type: ignore[call-overload]
    if "description" in changes:
        endpoint.description = str(changes["description"])
    if "payload_format" in changes:
        endpoint.payload_format = payload_format_check(str(changes["payload_format"]))
    if "enabled" in changes:
        enabled = bool(changes["enabled"])
        if enabled and not endpoint.enabled:
            endpoint.disabled_at, endpoint.disabled_reason, endpoint.failing_since = None, "", None
        elif not enabled and endpoint.enabled:
            endpoint.disabled_at, endpoint.disabled_reason = timezone.now(), "disabled by the organization"
        endpoint.enabled = enabled
    endpoint.updated_at = timezone.now()
    with transaction.atomic():
        endpoint.save()
        changed = diff(before, {f: getattr(endpoint, f) for f in fields})
        if changed:
            audit_record(
                organization=endpoint.organization_id,
                action="webhook.updated",
                target=endpoint,
                target_label=endpoint.url,
                changes=changed,
            )
    return endpoint


def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint, overlap: int | None = None) -> str:
    """A new secret; the current one keeps signing too (a second v1) for `overlap` seconds."""
    overlap = settings.POSTWERK_WEBHOOK_SECRET_OVERLAP if overlap is None else overlap
    secret, now = secret_new(), timezone.now()
    if overlap > 0:
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap)
    else:
        endpoint.previous_secret_encrypted, endpoint.previous_secret_expires_at = "", None
    endpoint.secret_encrypted = encrypt(secret.encode())
    endpoint.updated_at = now
    with transaction.atomic():
        endpoint.save()
        audit_record(
            organization=endpoint.organization_id,
            action="webhook.secret_rotated",
            target=endpoint,
            target_label=endpoint.url,
            changes={"old_secret_valid_until": endpoint.previous_secret_expires_at},
        )
    return secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> list[str]:
    """The secrets that sign a request now: the current one, and the previous one during its overlap."""
    now = now or timezone.now()
    found = [decrypt(endpoint.secret_encrypted).decode()]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at
        and (endpoint.previous_secret_expires_at > now)
    ):
        found.append(decrypt(endpoint.previous_secret_encrypted).decode())
    return found


def webhook_endpoint_disable(*, endpoint_id: object, reason: str, now: datetime | None = None) -> bool:
    """Disable an endpoint (410 Gone, or failing too long) and tell the organization with an event. False if
    it was already disabled."""
    now = now or timezone.now()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id, enabled=True).first()
        if endpoint is None:
            return False
        endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = False, now, reason[:300]
        endpoint.updated_at = now
        endpoint.save(update_fields=["enabled", "disabled_at", "disabled_reason", "updated_at"])
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint.pk, state__in=(WebhookDelivery.State.PENDING, WebhookDelivery.State.QUEUED)
        ).update(state=WebhookDelivery.State.CANCELLED, last_error=f"endpoint disabled: {reason}"[:500])
        details = {"endpoint_id": str(endpoint.pk), "url": endpoint.url, "reason": reason}
        organization_event(endpoint.organization_id, EventType.WEBHOOK_DISABLED, details, created_at=now)
    return True
