"""Invitations by email: owners and admins invite, resend and revoke on the Members page; the person invited
opens the emailed link, logs in or creates an account, and joins with the invited role."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.invitations import (
    InvitationError,
    Sent,
    invitation_accept,
    invitation_create,
    invitation_for_token,
    invitation_resend,
    invitation_revoke,
)
from accounts.models import Invitation
from dashboard.access import org_view
from dashboard.forms import InvitationSignupForm, InviteForm
from dashboard.security import security_headers
from dashboard.views.common import page
from dashboard.views.members import members_page


def _link(request: HttpRequest):  # type: ignore[no-untyped-def]
    return lambda token: request.build_absolute_uri(reverse("dashboard:invitation", args=[token]))


def _sent_message(request: HttpRequest, sent: Sent) -> None:
    if sent.error:
        messages.error(request, f"The email to {sent.invitation.email} could not be sent ({sent.error}).")
    else:
        messages.success(request, f"Invitation emailed to {sent.invitation.email}.")


@org_view("admin", methods=("POST",))
def member_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return members_page(request, invite_form=form, status=400)
    try:
        sent = invitation_create(
            actor=request.membership,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            link=_link(request),
        )
    except InvitationError as exc:
        form.add_error("email", str(exc))
        return members_page(request, invite_form=form, status=400)
    _sent_message(request, sent)
    # The link is shown on this answer only (like a new key's secret): for when the email does not arrive.
    return members_page(request, invited=sent, status=201)


def _invitation(request: HttpRequest, invitation_id: int) -> Invitation:
    return get_object_or_404(Invitation, organization=request.organization, pk=invitation_id)


@org_view("admin", methods=("POST",))
def invitation_send_again(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = _invitation(request, invitation_id)
    try:
        sent = invitation_resend(actor=request.membership, invitation=invitation, link=_link(request))
    except InvitationError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:members", org_id=request.organization.pk)
    _sent_message(request, sent)
    return members_page(request, invited=sent)


@org_view("admin", methods=("POST",))
def invitation_cancel(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = _invitation(request, invitation_id)
    try:
        invitation_revoke(actor=request.membership, invitation=invitation)
        messages.success(request, f"The invitation to {invitation.email} is revoked: its link no longer works.")
    except InvitationError as exc:
        messages.error(request, str(exc))
    return redirect("dashboard:members", org_id=request.organization.pk)


def _accept_page(request: HttpRequest, token: str, form: InvitationSignupForm | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    invitation = invitation_for_token(token)
    if invitation is None:
        return page(request, "dashboard/invitation.html", {"invitation": None}, status=404)
    return page(
        request,
        "dashboard/invitation.html",
        {
            "invitation": invitation,
            "token": token,
            "signup_form": form or InvitationSignupForm(),
            "login_url": f"{reverse('dashboard:login')}?next={reverse('dashboard:invitation', args=[token])}",
        },
        status=status,
    )


def _join(request: HttpRequest, token: str) -> HttpResponse:
    try:
        membership = invitation_accept(token=token, user=request.user)
    except InvitationError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:home")
    messages.success(request, f"Welcome to {membership.organization.name}: you are {membership.role}.")
    return redirect("dashboard:overview", org_id=membership.organization_id)


@security_headers
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows who invites whom to what; POST (logged in) accepts with the current account."""
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('dashboard:login')}?next={reverse('dashboard:invitation', args=[token])}")
        return _join(request, token)
    return _accept_page(request, token)


@security_headers
@require_http_methods(["POST"])
def invitation_signup(request: HttpRequest, token: str) -> HttpResponse:
    """A new account for the invited person, logged in and joined in one step."""
    if request.user.is_authenticated:
        return _join(request, token)
    invitation = invitation_for_token(token)
    if invitation is None:
        return _accept_page(request, token)
    form = InvitationSignupForm(request.POST)
    if not form.is_valid():
        return _accept_page(request, token, form, status=400)
    try:
        with transaction.atomic():
            user = form.save(commit=False)
            user.email = invitation.email
            user.save()
            invitation_accept(token=token, user=user)
    except InvitationError:  # used or revoked in the meantime: no account either
        return _accept_page(request, token)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, f"Welcome to {invitation.organization.name}: you are {invitation.role}.")
    return redirect("dashboard:overview", org_id=invitation.organization_id)
