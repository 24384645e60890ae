"""Webhook endpoint actions the API does inline that the dashboard needs as plain functions."""

from __future__ import annotations

from sending.models import WebhookEndpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint with its deliveries and attempts (what DELETE /api/v1/webhooks/<id> does)."""
    endpoint.delete()
