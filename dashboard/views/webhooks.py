"""Webhook endpoints: list, create (the signing secret is shown once, on the answer to the POST), rotate the
secret (shown once), enable or disable, delete, send a test event, and each endpoint's recent deliveries with
their attempts and a replay button. Owners and admins manage endpoints and see secrets (like API keys);
developers may also send tests and replay; viewers only look."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from dashboard.access import org_view
from dashboard.forms import WebhookDeliveryFilterForm, WebhookEnabledForm, WebhookEndpointForm, WebhookTestForm
from dashboard.selectors import webhook_endpoints, webhook_recent_deliveries
from dashboard.views.common import page
from sending.models import WebhookDelivery, WebhookEndpoint
from sending.webhooks.dispatch import ReplayRefused, delivery_replay, endpoint_test
from sending.webhooks.endpoints import (
    EndpointError,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from sending.webhooks.manage import webhook_endpoint_delete


def _endpoint(request: HttpRequest, endpoint_id: object) -> WebhookEndpoint:
    return get_object_or_404(WebhookEndpoint, organization=request.organization, pk=endpoint_id)


def _list(
    request: HttpRequest,
    *,
    form: WebhookEndpointForm | None = None,
    new_endpoint: tuple[WebhookEndpoint, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    return page(
        request,
        "dashboard/webhooks.html",
        {
            "section": "webhooks",
            "endpoints": webhook_endpoints(request.organization),
            "form": form or WebhookEndpointForm(),
            "new_endpoint": new_endpoint,
        },
        status=status,
    )


def _detail(
    request: HttpRequest, endpoint: WebhookEndpoint, *, new_secret: str | None = None, status: int = 200
) -> HttpResponse:
    filters = WebhookDeliveryFilterForm(request.GET or None)
    valid = filters.is_valid() if request.GET else True
    chosen = filters.cleaned_data if request.GET and valid else {}
    deliveries = (
        webhook_recent_deliveries(
            endpoint,
            event_type=chosen.get("type", ""),
            state=chosen.get("state", ""),
            recipient=chosen.get("recipient", ""),
        )
        if valid
        else []
    )
    return page(
        request,
        "dashboard/webhook_detail.html",
        {
            "section": "webhooks",
            "endpoint": endpoint,
            "deliveries": deliveries,
            "form": filters,
            "filtered": bool(request.GET),
            "test_form": WebhookTestForm(),
            "new_secret": new_secret,
        },
        status=status if valid else 400,
    )


def _back(request: HttpRequest, endpoint: WebhookEndpoint) -> HttpResponse:
    return redirect("dashboard:webhook", org_id=request.organization.pk, endpoint_id=endpoint.pk)


@org_view("view")
def webhooks(request: HttpRequest) -> HttpResponse:
    return _list(request)


@org_view("secrets", methods=("POST",))
def webhook_new(request: HttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST)
    if not form.is_valid():
        return _list(request, form=form, status=400)
    try:
        endpoint, secret = webhook_endpoint_create(organization=request.organization, **form.cleaned_data)
    except EndpointError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _list(request, form=form, status=400)
    return _list(request, new_endpoint=(endpoint, secret), status=201)


@org_view("view")
def webhook_detail(request: HttpRequest, endpoint_id: object) -> HttpResponse:
    return _detail(request, _endpoint(request, endpoint_id))


@org_view("secrets", methods=("POST",))
def webhook_rotate(request: HttpRequest, endpoint_id: object) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    secret = webhook_endpoint_rotate_secret(endpoint=endpoint)
    return _detail(request, endpoint, new_secret=secret)


@org_view("admin", methods=("POST",))
def webhook_enabled(request: HttpRequest, endpoint_id: object) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    form = WebhookEnabledForm(request.POST)
    if form.is_valid():
        webhook_endpoint_update(endpoint=endpoint, enabled=form.cleaned_data["enabled"])
        messages.success(request, f"Endpoint {endpoint.url} {'enabled' if endpoint.enabled else 'disabled'}.")
    else:
        messages.error(request, "Choose enable or disable.")
    return _back(request, endpoint)


@org_view("admin", methods=("POST",))
def webhook_remove(request: HttpRequest, endpoint_id: object) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    url = endpoint.url
    webhook_endpoint_delete(endpoint=endpoint)
    messages.success(request, f"Endpoint {url} deleted with its delivery log.")
    return redirect("dashboard:webhooks", org_id=request.organization.pk)


@org_view("sending", methods=("POST",))
def webhook_test(request: HttpRequest, endpoint_id: object) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    form = WebhookTestForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown event type.")
        return _back(request, endpoint)
    attempt = endpoint_test(endpoint=endpoint, event_type=form.cleaned_data["type"])
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        messages.success(request, f"Test event answered {attempt.status_code} in {attempt.duration_ms} ms.")
    else:
        answer = attempt.status_code or attempt.error or "no answer"
        messages.error(request, f"Test event failed: {answer} after {attempt.duration_ms} ms.")
    return _back(request, endpoint)


@org_view("sending", methods=("POST",))
def webhook_replay(request: HttpRequest, endpoint_id: object, delivery_id: object) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint"), endpoint=endpoint, pk=delivery_id)
    try:
        delivery_replay(delivery=delivery)
    except ReplayRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Delivery queued to be sent again now.")
    return _back(request, endpoint)
