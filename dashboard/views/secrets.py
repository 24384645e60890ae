"""API keys and SMTP credentials: create (the secret is shown once, on the answer to the POST, and stored
nowhere), revoke, last used; the settings an application needs to connect."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone

from accounts.models import ApiKey, SmtpCredential
from accounts.scopes import ScopeError
from accounts.services import (
    api_key_create,
    api_key_revoke,
    ses_access_key_issue,
    smtp_credential_create,
    smtp_credential_revoke,
)
from dashboard.access import org_view
from dashboard.forms import ApiKeyForm, SmtpCredentialForm
from dashboard.views.common import page


def _port(listener: str) -> int | None:
    if not listener or listener.strip().lower() == "off":
        return None
    try:
        return int(listener.rpartition(":")[2])
    except ValueError:
        return None


def connection_settings(request: HttpRequest) -> dict:
    return {
        "api_url": request.build_absolute_uri("/api/v1/"),
        # SES clients take the base URL as their endpoint_url (the SES paths start with /v2/email/).
        "ses_endpoint_url": request.build_absolute_uri("/").rstrip("/"),
        "smtp_host": settings.POSTWERK_HOSTNAME,
        "starttls_port": _port(settings.POSTWERK_SMTP_SUBMISSION),
        "tls_port": _port(settings.POSTWERK_SMTP_SUBMISSIONS),
    }


def _page(
    request: HttpRequest,
    *,
    key_form: ApiKeyForm | None = None,
    smtp_form: SmtpCredentialForm | None = None,
    new_key: tuple[ApiKey, str] | None = None,
    new_credential: tuple[SmtpCredential, str] | None = None,
    new_ses: tuple[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    org = request.organization
    return page(
        request,
        "dashboard/keys.html",
        {
            "section": "keys",
            "api_keys": ApiKey.objects.filter(organization=org).order_by("revoked_at", "-created_at"),
            "credentials": SmtpCredential.objects.filter(organization=org)
            .prefetch_related("allowed_domains")
            .order_by("revoked_at", "-created_at"),
            "key_form": key_form or ApiKeyForm(organization=org),
            "smtp_form": smtp_form or SmtpCredentialForm(organization=org),
            "new_key": new_key,
            "new_credential": new_credential,
            "new_ses": new_ses,
            "connection": connection_settings(request),
            "now": timezone.now(),
        },
        status=status,
    )


@org_view("secrets")
def keys(request: HttpRequest) -> HttpResponse:
    return _page(request)


@org_view("secrets", methods=("POST",))
def api_key_new(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST, organization=request.organization)
    if not form.is_valid():
        return _page(request, key_form=form, status=400)
    data = form.cleaned_data
    try:
        with transaction.atomic():  # the key and its SES access key, or neither
            api_key, secret = api_key_create(
                organization=request.organization,
                name=data["name"],
                scopes=data["scopes"],
                domains=[d.name for d in data["allowed_domains"]],
                networks=data["allowed_networks"],
                expires_at=data["expires_at"],
                created_by=request.user,
                sandbox=data["sandbox"],
            )
            ses = ses_access_key_issue(api_key=api_key) if data["ses_access_key"] else None
    except ScopeError as exc:
        field = {"domains": "allowed_domains", "networks": "allowed_networks"}.get(exc.field, exc.field)
        form.add_error(field if field in form.fields else None, str(exc))
        return _page(request, key_form=form, status=400)
    return _page(request, new_key=(api_key, secret), new_ses=ses, status=201)


@org_view("secrets", methods=("POST",))
def api_key_cancel(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = api_key_revoke(api_key=get_object_or_404(ApiKey, organization=request.organization, pk=key_id))
    messages.success(request, f"API key {api_key.name} revoked: requests with it now get 401.")
    return redirect("dashboard:keys", org_id=request.organization.pk)


@org_view("secrets", methods=("POST",))
def smtp_credential_new(request: HttpRequest) -> HttpResponse:
    form = SmtpCredentialForm(request.POST, organization=request.organization)
    if not form.is_valid():
        return _page(request, smtp_form=form, status=400)
    data = form.cleaned_data
    try:
        credential, password = smtp_credential_create(
            organization=request.organization,
            name=data["name"],
            domains=list(data["allowed_domains"]),
            networks=data["allowed_networks"],
            sandbox=data["sandbox"],
        )
    except ValueError as exc:
        form.add_error("allowed_networks", str(exc))
        return _page(request, smtp_form=form, status=400)
    return _page(request, new_credential=(credential, password), status=201)


@org_view("secrets", methods=("POST",))
def smtp_credential_cancel(request: HttpRequest, credential_id: int) -> HttpResponse:
    credential = smtp_credential_revoke(
        credential=get_object_or_404(SmtpCredential, organization=request.organization, pk=credential_id)
    )
    messages.success(request, f"SMTP credential {credential.name} revoked.")
    return redirect("dashboard:keys", org_id=request.organization.pk)
