"""Writes the dashboard needs that no other module offers yet: members and roles, and the CSV form of the
suppression list (same columns and rules as the API's import and export). Everything else the dashboard does
goes through the services of `accounts` and `sending`."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.audit import audit_record
from accounts.models import Membership
from mail.errors import PostwerkError

Role = Membership.Role

# --- Members ----------------------------------------------------------------------------------------------


class MembershipError(PostwerkError, ValueError):
    pass


def _assert_may_manage(actor: Membership, role: str) -> None:
    """Admins manage admins, developers and viewers; only an owner grants, changes or removes ownership."""
    if actor.role not in (Role.OWNER, Role.ADMIN):
        raise MembershipError("Only owners and admins manage members.")
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise MembershipError("Only an owner can give or take the owner role.")


def _assert_not_last_owner(membership: Membership) -> None:
    if membership.role == Role.OWNER and (
        not Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    ):
        raise MembershipError("An organization keeps at least one owner: make someone else owner first.")


@transaction.atomic
def membership_add(*, actor: Membership, identifier: str, role: str) -> tuple[Membership, str | None]:
    """Add a user (by username or email) to the actor's organization. A user that does not exist yet is
    created with a random password, returned once so the actor can hand it over."""
    _assert_may_manage(actor, role)
    identifier = identifier.strip()
    if not identifier:
        raise MembershipError("Give a username or an email address.")
    user_model = get_user_model()
    user = (
        user_model.objects.filter(username__iexact=identifier).first()
        or user_model.objects.filter(email__iexact=identifier).order_by("pk").first()
    )
    password = None
    if user is None:
        if "@" not in identifier:
            raise MembershipError(f"No user {identifier!r}; give an email address to create one.")
        if len(identifier) > 150:  # the username is the address, and Django's usernames stop at 150
            raise MembershipError("That address is too long to be a username.")
        password = secrets.token_urlsafe(12)
        user = user_model.objects.create_user(username=identifier.lower(), email=identifier.lower(), password=password)
    if Membership.objects.filter(organization_id=actor.organization_id, user=user).exists():
        raise MembershipError(f"{user.get_username()} is already a member.")
    membership = Membership.objects.create(organization_id=actor.organization_id, user=user, role=role)
    audit_record(
        organization=actor.organization_id,
        action="member.added",
        target=membership,
        target_label=user.get_username(),
        changes={"role": role, "new_account": password is not None},
    )
    return membership, password


@transaction.atomic
def membership_change_role(*, actor: Membership, membership: Membership, role: str) -> Membership:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _assert_may_manage(actor, membership.role)
    _assert_may_manage(actor, role)
    if role != Role.OWNER:
        _assert_not_last_owner(membership)
    before, membership.role = membership.role, role
    membership.save(update_fields=["role"])
    if before != role:
        audit_record(
            organization=membership.organization_id,
            action="member.role_changed",
            target=membership,
            target_label=membership.user.get_username(),
            changes={"role": [before, role]},
        )
    return membership


@transaction.atomic
def membership_remove(*, actor: Membership, membership: Membership) -> None:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _assert_may_manage(actor, membership.role)
    _assert_not_last_owner(membership)
    audit_record(
        organization=membership.organization_id,
        action="member.removed",
        target=membership,
        target_label=membership.user.get_username(),
        changes={"role": membership.role},
    )
    membership.delete()
