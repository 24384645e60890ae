"""Webhook endpoint actions the API does inline that the dashboard needs as plain functions."""

from __future__ import annotations

from django.db import transaction

from accounts.audit import audit_record
from sending.models import WebhookEndpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint with its deliveries and attempts (what DELETE /api/v1/webhooks/<id> does)."""
    audit_record(
        organization=endpoint.organization_id, action="webhook.deleted", target=endpoint, target_label=endpoint.url
    )
    endpoint.delete()
