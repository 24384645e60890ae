"""Members and their roles: owners and admins add, change and remove; everyone sees who is in."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from accounts.invitations import Sent, pending
from accounts.models import Invitation, Membership
from accounts.two_factor import two_factor_users
from dashboard.access import can, org_view
from dashboard.forms import InviteForm, MemberAddForm, MemberRoleForm
from dashboard.services import MembershipError, membership_add, membership_change_role, membership_remove
from dashboard.views.common import page

ROLE_HELP = [
    ("owner", "Everything, including giving and taking the owner role."),
    (
        "admin",
        "Everything except the owner role: domains, suppressions, API keys, SMTP credentials, members, "
        "releasing and cancelling held mail.",
    ),
    ("developer", "Domains and suppressions, all messages and held mail; no API keys or SMTP credentials."),
    ("viewer", "Reads everything except secrets; changes nothing."),
]


def members_page(
    request: HttpRequest,
    form: MemberAddForm | None = None,
    created: tuple | None = None,
    *,
    invite_form: InviteForm | None = None,
    invited: Sent | None = None,
    status: int = 200,
) -> HttpResponse:
    members = Membership.objects.filter(organization=request.organization).select_related("user")
    invitations = pending(Invitation.objects.filter(organization=request.organization)).select_related("invited_by")
    return page(
        request,
        "dashboard/members.html",
        {
            "section": "members",
            "members": members.order_by("user__username"),
            "form": form or MemberAddForm(),
            "roles": Membership.Role.choices,
            "role_help": ROLE_HELP,
            "created": created,
            "invite_form": invite_form or InviteForm(),
            "invitations": invitations.order_by("email") if can(request.membership.role, "admin") else [],
            "invited": invited,
            "two_factor_users": two_factor_users(members.values_list("user_id", flat=True)),
        },
        status=status,
    )


@org_view()
def members(request: HttpRequest) -> HttpResponse:
    return members_page(request)


@org_view("admin", methods=("POST",))
def member_add(request: HttpRequest) -> HttpResponse:
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        return members_page(request, form, status=400)
    try:
        membership, password = membership_add(
            actor=request.membership, identifier=form.cleaned_data["identifier"], role=form.cleaned_data["role"]
        )
    except MembershipError as exc:
        form.add_error("identifier", str(exc))
        return members_page(request, form, status=400)
    if password is not None:
        return members_page(request, created=(membership, password), status=201)
    messages.success(request, f"{membership.user.get_username()} added as {membership.role}.")
    return redirect("dashboard:members", org_id=request.organization.pk)


def _member(request: HttpRequest, member_id: int) -> Membership:
    return get_object_or_404(Membership, organization=request.organization, pk=member_id)


@org_view("admin", methods=("POST",))
def member_role(request: HttpRequest, member_id: int) -> HttpResponse:
    membership = _member(request, member_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
    else:
        try:
            membership = membership_change_role(
                actor=request.membership, membership=membership, role=form.cleaned_data["role"]
            )
            messages.success(request, f"{membership.user.get_username()} is now {membership.role}.")
        except MembershipError as exc:
            messages.error(request, str(exc))
    return redirect("dashboard:members", org_id=request.organization.pk)


@org_view("admin", methods=("POST",))
def member_remove(request: HttpRequest, member_id: int) -> HttpResponse:
    membership = _member(request, member_id)
    try:
        membership_remove(actor=request.membership, membership=membership)
    except MembershipError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:members", org_id=request.organization.pk)
    messages.success(request, f"{membership.user.get_username()} removed.")
    if membership.user_id == request.user.pk:
        return redirect("dashboard:home")
    return redirect("dashboard:members", org_id=request.organization.pk)
