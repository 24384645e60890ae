"""Inbound mail: the organization's routes (add, delete), the mail they accepted, and one message with its
authentication results and every post attempt (retry by hand). Routes are changed by members who may send."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from dashboard.access import org_view
from dashboard.views.common import page
from sending.inbound.by_hand import RetryRefused, inbound_post_retry, inbound_release
from sending.inbound.routes import RouteError, inbound_domain_set, inbound_route_create, inbound_route_delete
from sending.models import Domain, InboundMail, InboundRoute

PAGE_SIZE = 50


class RouteForm(forms.Form):
    match = forms.CharField(max_length=320, help_text="support@inbound.acme.example, orders+*@…, *@…")
    action = forms.ChoiceField(choices=InboundRoute.Action.choices)
    url = forms.CharField(max_length=2000, required=False, label="URL (post routes)")
    dmarc_reject = forms.ChoiceField(
        choices=InboundRoute.DmarcReject.choices, label="Failing DMARC under p=reject", initial="accept"
    )
    spam = forms.ChoiceField(choices=InboundRoute.DmarcReject.choices, label="Spam", initial="accept", required=False)

    def clean_spam(self) -> str:
        return self.cleaned_data.get("spam") or InboundRoute.DmarcReject.ACCEPT  # forms from before the field


def _list(request: HttpRequest, form: RouteForm, status: int = 200) -> HttpResponse:
    org = request.organization  # type: ignore[attr-defined]
    mails = InboundMail.objects.filter(organization=org).defer("raw", "parsed").order_by("-received_at", "-id")
    state = request.GET.get("state")
    if state in InboundMail.State.values:
        mails = mails.filter(state=state)
    return page(
        request,
        "dashboard/inbound.html",
        {
            "section": "inbound",
            "routes": InboundRoute.objects.filter(organization=org).select_related("endpoint").order_by("match"),
            "domains": org.domains.filter(inbound_enabled=True).order_by("name"),
            "form": form,
            "page_obj": Paginator(mails, PAGE_SIZE).get_page(request.GET.get("page")),
            "states": InboundMail.State.values,
            "state": state,
        },
        status=status,
    )


@org_view()
def inbound_list(request: HttpRequest) -> HttpResponse:
    return _list(request, RouteForm())


@org_view("sending", methods=("POST",))
def inbound_route_add(request: HttpRequest) -> HttpResponse:
    form = RouteForm(request.POST)
    if form.is_valid():
        try:
            _, secret = inbound_route_create(organization=request.organization, **form.cleaned_data)  # type: ignore[attr-defined]
        except RouteError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            note = f" Its signing secret, shown once: {secret}" if secret else ""
            messages.success(request, f"Route for {form.cleaned_data['match']} added.{note}")
            return redirect("dashboard:inbound", request.organization.pk)  # type: ignore[attr-defined]
    return _list(request, form, status=400)


@org_view("sending", methods=("POST",))
def inbound_route_remove(request: HttpRequest, route_id: str) -> HttpResponse:
    route = InboundRoute.objects.filter(organization=request.organization, pk=route_id).first()  # type: ignore[attr-defined]
    if route is None:
        raise Http404("No such route.")
    inbound_route_delete(route=route)
    messages.success(request, f"Route for {route.match} deleted.")
    return redirect("dashboard:inbound", request.organization.pk)  # type: ignore[attr-defined]


def _mail(request: HttpRequest, inbound_id: str) -> InboundMail:
    mail = InboundMail.objects.filter(organization=request.organization, pk=inbound_id).first()  # type: ignore[attr-defined]
    if mail is None:
        raise Http404("No such inbound message.")
    return mail


@org_view()
def inbound_detail(request: HttpRequest, inbound_id: str) -> HttpResponse:
    mail = _mail(request, inbound_id)
    deliveries = mail.deliveries.order_by("created_at").prefetch_related("attempt_log")
    return page(
        request,
        "dashboard/inbound_detail.html",
        {"section": "inbound", "mail": mail, "deliveries": deliveries, "headers": mail.parsed.get("Headers", [])},
    )


@org_view("sending", methods=("POST",))
def inbound_retry(request: HttpRequest, inbound_id: str) -> HttpResponse:
    mail = _mail(request, inbound_id)
    try:
        inbound_post_retry(mail=mail)
    except RetryRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Posting again now.")
    return redirect("dashboard:inbound_detail", request.organization.pk, mail.pk)  # type: ignore[attr-defined]


@org_view("sending", methods=("POST",))
def inbound_release_view(request: HttpRequest, inbound_id: str) -> HttpResponse:
    mail = _mail(request, inbound_id)
    try:
        _, delivery = inbound_release(mail=mail)
    except RetryRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Released: posting it now." if delivery is not None else "Released: stored.")
    return redirect("dashboard:inbound_detail", request.organization.pk, mail.pk)  # type: ignore[attr-defined]


@org_view("sending", methods=("POST",))
def domain_inbound(request: HttpRequest, domain_id: int) -> HttpResponse:
    """The domain page's inbound form: enable (at the domain or one subdomain) or disable inbound mail."""
    domain = Domain.objects.filter(organization=request.organization, pk=domain_id).first()  # type: ignore[attr-defined]
    if domain is None:
        raise Http404("No such domain.")
    enabled = request.POST.get("enabled") == "on"
    try:
        inbound_domain_set(domain=domain, enabled=enabled, subdomain=request.POST.get("subdomain", ""))
    except RouteError as exc:
        messages.error(request, exc.message)
    else:
        state = f"receives mail at {domain.inbound_host}" if enabled else "receives no inbound mail"
        messages.success(request, f"{domain.name} {state}; publish its MX records, then check DNS.")
    return redirect("dashboard:domain", org_id=request.organization.pk, domain_id=domain.pk)  # type: ignore[attr-defined]
