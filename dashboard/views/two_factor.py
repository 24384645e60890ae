"""Two-factor pages: enrolment (QR code, confirm with a code, recovery codes shown once), the code asked after
the password, renewing recovery codes, turning it off; and an organization's "require two-factor" setting."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login

from accounts.two_factor import (
    code_check,
    enrolment_confirm,
    enrolment_start,
    has_two_factor,
    recovery_codes_left,
    recovery_codes_renew,
    two_factor_disable,
    two_factor_required,
)
from dashboard.access import org_view
from dashboard.security import security_headers
from dashboard.views.common import page


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=32,
        label="Code",
        help_text="The six digits your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}),
    )


def _signed_in(view):  # type: ignore[no-untyped-def]
    return security_headers(login_required(require_http_methods(["GET", "POST"])(view)))


@_signed_in
def two_factor(request: HttpRequest) -> HttpResponse:
    """Enrolment when the person has no authenticator; otherwise its status, new recovery codes, turning it off."""
    user = request.user
    if not has_two_factor(user):
        return _enrolment(request, CodeForm())
    form = CodeForm(request.POST or None)
    action = request.POST.get("action")
    if request.method == "POST" and form.is_valid():
        if code_check(user=user, code=form.cleaned_data["code"]) is None:
            form.add_error("code", "That code is not right (or was used already). Try the next one.")
        elif action == "renew":
            return _status(request, form=CodeForm(), recovery_codes=recovery_codes_renew(user=user), status=201)
        elif action == "disable":
            if two_factor_required(user):
                form.add_error("code", "An organization you belong to requires two-factor: it cannot be turned off.")
            else:
                two_factor_disable(user=user)
                messages.success(request, "Two-factor sign-in is off.")
                return redirect("dashboard:two_factor")
    return _status(request, form=form, status=400 if request.method == "POST" else 200)


@_signed_in
def two_factor_confirm(request: HttpRequest) -> HttpResponse:
    if request.method != "POST" or has_two_factor(request.user):
        return redirect("dashboard:two_factor")
    form = CodeForm(request.POST)
    confirmed = form.is_valid() and enrolment_confirm(user=request.user, code=form.cleaned_data["code"])
    if not confirmed:
        if form.is_valid():
            form.add_error("code", "That code is not right. Check the phone's clock and type the current code.")
        return _enrolment(request, form, status=400)
    device, codes = confirmed
    otp_login(request, device)  # this session has just proven the second factor
    return _status(request, form=CodeForm(), recovery_codes=codes, status=201)


@_signed_in
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """The code asked after the password (the gate sends here every page of a session without it)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = ""
    if not has_two_factor(request.user) or request.user.is_verified():
        return redirect(target or "dashboard:home")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = code_check(user=request.user, code=form.cleaned_data["code"])
        if device is not None:
            otp_login(request, device)
            return redirect(target or "dashboard:home")
        form.add_error("code", "That code is not right (or was used already).")
    status = 400 if request.method == "POST" else 200
    return page(request, "dashboard/two_factor_verify.html", {"form": form, "next": target}, status=status)


def _enrolment(request: HttpRequest, form: CodeForm, status: int = 200) -> HttpResponse:
    enrolment = enrolment_start(user=request.user)
    context = {"enrolment": enrolment, "form": form, "required": two_factor_required(request.user)}
    return page(request, "dashboard/two_factor.html", context, status=status)


def _status(
    request: HttpRequest, *, form: CodeForm, recovery_codes: list[str] | None = None, status: int = 200
) -> HttpResponse:
    context = {
        "enrolled": True,
        "form": form,
        "recovery_codes": recovery_codes,
        "codes_left": recovery_codes_left(request.user),
        "required": two_factor_required(request.user),
    }
    return page(request, "dashboard/two_factor.html", context, status=status)


@org_view("admin", methods=("POST",))
def organization_two_factor(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    organization.require_two_factor = request.POST.get("require_two_factor") == "on"
    organization.save(update_fields=["require_two_factor"])
    if organization.require_two_factor:
        messages.success(request, "Every member must now sign in with two-factor; those without it enrol first.")
    else:
        messages.success(request, "Two-factor is no longer required of members.")
    return redirect("dashboard:members", org_id=organization.pk)
