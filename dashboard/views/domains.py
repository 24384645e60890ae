"""Sender domains: the list, adding one, its records to publish, its checks, check now, DKIM rotation, delete."""

from __future__ import annotations

from django.contrib import messages
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from dashboard.access import org_view
from dashboard.charts import bar_chart
from dashboard.forms import DomainAddForm, DomainTestMessageForm, RotateDkimForm
from dashboard.selectors import RECORD_PURPOSES, check_label, check_publisher, domain_setup_steps, domain_status
from dashboard.views.common import page
from sending.domains.platform_names import PlatformNamesNotSet
from sending.domains.service import (
    DomainError,
    DomainInUse,
    dns_records,
    domain_delete,
    domain_get_or_create,
    domain_rotate_dkim,
)
from sending.domains.verification import domain_verify
from sending.errors import Refused
from sending.feedback.dmarc_overview import dmarc_overview
from sending.intake.domain_test_message import domain_test_message_send
from sending.models import DkimKey, DnsCheckStatus, Domain


def _domain(request: HttpRequest, domain_id: int) -> Domain:
    return get_object_or_404(Domain, organization=request.organization, pk=domain_id)


def _list(request: HttpRequest, form: DomainAddForm | None = None, status: int = 200) -> HttpResponse:
    domains = Domain.objects.filter(organization=request.organization).prefetch_related("dns_checks").order_by("name")
    rows = []
    for domain in domains:
        checks = list(domain.dns_checks.all())
        failing = [c for c in checks if c.status in (DnsCheckStatus.MISSING, DnsCheckStatus.WRONG)]
        rows.append({"domain": domain, "failing": failing, "status": domain_status(domain, checks)})
    return page(
        request,
        "dashboard/domains.html",
        {"section": "domains", "rows": rows, "form": form or DomainAddForm()},
        status=status,
    )


@org_view()
def domains(request: HttpRequest) -> HttpResponse:
    return _list(request)


@org_view("sending", methods=("POST",))
def domain_add(request: HttpRequest) -> HttpResponse:
    form = DomainAddForm(request.POST)
    if not form.is_valid():
        return _list(request, form, status=400)
    data = form.cleaned_data
    try:
        domain, created = domain_get_or_create(
            organization=request.organization,
            name=data["name"],
            ed25519=data["dkim_ed25519"],
            return_path_subdomain=data["return_path_subdomain"],
        )
    except (DomainError, IntegrityError) as exc:
        message = str(exc) if isinstance(exc, DomainError) else "The domain was just added."
        form.add_error("return_path_subdomain" if "label" in message else "name", message)
        return _list(request, form, status=400)
    if not created:
        form.add_error("name", f"{domain.name} is already added.")
        return _list(request, form, status=400)
    if data["allow_subdomains"]:
        domain.allow_subdomains = True
        domain.save(update_fields=["allow_subdomains"])
    messages.success(request, f"{domain.name} added. Publish the records below, then check.")
    return redirect("dashboard:domain", org_id=request.organization.pk, domain_id=domain.pk)


def dmarc_reports_view(domain: Domain) -> dict:
    """The domain's report overview with its daily pass rate drawn as bars (in percent)."""
    overview = dmarc_overview(domain)
    daily = overview.daily
    chart = bar_chart([round((d["pass_rate"] or 0) * 100) for d in daily], [d["day"] for d in daily])
    return {"overview": overview, "chart": chart}


def _detail(
    request: HttpRequest, domain: Domain, *, test_form: DomainTestMessageForm | None = None, status: int = 200
) -> HttpResponse:
    stored = list(domain.dns_checks.order_by("name"))
    checks = [{"check": c, "label": check_label(c.name), "publisher": check_publisher(c)} for c in stored]
    records, records_unavailable = _records(domain)
    return page(
        request,
        "dashboard/domain_detail.html",
        {
            "section": "domains",
            "domain": domain,
            "status": domain_status(domain, stored),
            "records": records,
            "records_unavailable": records_unavailable,
            "checks": checks,
            "keys": domain.dkim_keys.order_by("-created_at"),
            "rotate_form": RotateDkimForm(),
            "test_form": test_form or DomainTestMessageForm(),
            "dmarc": dmarc_reports_view(domain),
        },
        status=status,
    )


@org_view()
def domain_detail(request: HttpRequest, domain_id: int) -> HttpResponse:
    return _detail(request, _domain(request, domain_id))


def _records(domain: Domain) -> tuple[list[dict], str]:
    """The records to publish with their purpose in words, or why they cannot be listed yet."""
    try:
        records = dns_records(domain)
    except PlatformNamesNotSet as exc:
        return [], str(exc)
    return [{**r, "label": RECORD_PURPOSES.get(r["purpose"], r["purpose"])} for r in records], ""


def _check_now(request: HttpRequest, domain: Domain) -> None:
    """Look the records up in DNS now and say what was found."""
    checks = domain_verify(domain=domain)
    ok = sum(c.status == DnsCheckStatus.OK for c in checks)
    domain.refresh_from_db()
    state = domain_status(domain, checks).label.lower()
    messages.info(request, f"Checked {domain.name}: {ok} of {len(checks)} checks pass; the domain {state}.")


@org_view("sending", methods=("POST",))
def domain_check(request: HttpRequest, domain_id: int) -> HttpResponse:
    domain = _domain(request, domain_id)
    _check_now(request, domain)
    if request.POST.get("next") == "setup":
        return redirect("dashboard:domain_setup", org_id=request.organization.pk, domain_id=domain.pk)
    return redirect("dashboard:domain", org_id=request.organization.pk, domain_id=domain.pk)


@org_view()
def domain_setup(request: HttpRequest, domain_id: int) -> HttpResponse:
    """The set-up checklist: each record to publish, ticked off by what the last check found in DNS."""
    domain = _domain(request, domain_id)
    stored = list(domain.dns_checks.order_by("name"))
    records, records_unavailable = _records(domain)
    steps = domain_setup_steps(domain, records, stored)
    return page(
        request,
        "dashboard/domain_setup.html",
        {
            "section": "domains",
            "domain": domain,
            "status": domain_status(domain, stored),
            "steps": steps,
            "done": sum(s.state == "done" for s in steps),
            "records_unavailable": records_unavailable,
        },
    )


@org_view("sending", methods=("POST",))
def domain_send_test(request: HttpRequest, domain_id: int) -> HttpResponse:
    """A test message from the domain through the one accept pipeline; its page then shows it being delivered."""
    domain = _domain(request, domain_id)
    form = DomainTestMessageForm(request.POST)
    if not form.is_valid():
        return _detail(request, domain, test_form=form, status=400)
    data = form.cleaned_data
    try:
        prepared = domain_test_message_send(
            organization=request.organization, domain=domain, local_part=data["local_part"], to=data["to"]
        )
    except Refused as exc:
        form.add_error(None, f"Not sent: {exc.message}")
        return _detail(request, domain, test_form=form, status=exc.http_status)
    state = prepared.recipients[0].state
    messages.success(request, f"Test message to {data['to'].address} accepted ({state}); follow it below.")
    return redirect("dashboard:message", org_id=request.organization.pk, message_id=prepared.message.pk)


@org_view("sending", methods=("POST",))
def domain_rotate(request: HttpRequest, domain_id: int) -> HttpResponse:
    domain = _domain(request, domain_id)
    form = RotateDkimForm(request.POST)
    algorithm = form.cleaned_data["algorithm"] if form.is_valid() else DkimKey.Algorithm.RSA
    key = domain_rotate_dkim(domain=domain, algorithm=algorithm)
    messages.success(
        request,
        f"New DKIM key {key.selector}: publish {key.record_name}. The current key signs until the new record is seen.",
    )
    return redirect("dashboard:domain", org_id=request.organization.pk, domain_id=domain.pk)


@org_view("admin", methods=("POST",))
def domain_remove(request: HttpRequest, domain_id: int) -> HttpResponse:
    domain = _domain(request, domain_id)
    try:
        domain_delete(domain=domain)
    except DomainInUse as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:domain", org_id=request.organization.pk, domain_id=domain.pk)
    messages.success(request, f"{domain.name} deleted.")
    return redirect("dashboard:domains", org_id=request.organization.pk)
