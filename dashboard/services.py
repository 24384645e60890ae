"""Writes the dashboard needs that no other module offers yet: members and roles, and the CSV form of the
suppression list (same columns and rules as the API's import and export). Everything else the dashboard does
goes through the services of `accounts` and `sending`."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.models import Membership, Organization
from sending.addresses import AddressError, parse_mailbox
from sending.models import Suppression
from sending.suppressions import suppression_add

Role = Membership.Role

# --- Members ----------------------------------------------------------------------------------------------


class MembershipError(ValueError):
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
    return Membership.objects.create(organization_id=actor.organization_id, user=user, role=role), password


@transaction.atomic
def membership_change_role(*, actor: Membership, membership: Membership, role: str) -> Membership:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _assert_may_manage(actor, membership.role)
    _assert_may_manage(actor, role)
    if role != Role.OWNER:
        _assert_not_last_owner(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, actor: Membership, membership: Membership) -> None:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _assert_may_manage(actor, membership.role)
    _assert_not_last_owner(membership)
    membership.delete()


# --- Suppressions as CSV ----------------------------------------------------------------------------------

CSV_FIELDS = ["address", "reason", "created_at", "expires_at", "created_by", "source_message_id", "details"]
MAX_IMPORT_ROWS = 100_000


def suppressions_csv(rows: Iterable[Suppression]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        writer.writerow(
            [
                row.address,
                row.reason,
                row.created_at.isoformat(),
                row.expires_at.isoformat() if row.expires_at else "",
                row.created_by,
                row.source_message_id or "",
                row.details.get("reason") or row.details.get("note") or "",
            ]
        )
    return out.getvalue()


@dataclass
class ImportResult:
    added: int = 0
    existing: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def suppressions_import(*, organization: Organization, text: str, created_by: str) -> ImportResult:
    """CSV with an `address` column and optional `reason`, or one address per line. Bad lines are reported,
    the others applied."""
    rows = list(csv.reader(io.StringIO(text)))
    first = [h.strip().lower() for h in rows[0]] if rows else []
    has_header = "address" in first
    header, body = (first, rows[1:]) if has_header else (["address"], rows)
    if len(body) > MAX_IMPORT_ROWS:
        raise ValueError(f"At most {MAX_IMPORT_ROWS} rows per import; got {len(body)}.")
    result = ImportResult()
    for line, values in enumerate(body, start=2 if has_header else 1):
        if not any(v.strip() for v in values):
            continue
        record = dict(zip(header, (v.strip() for v in values), strict=False))
        reason = record.get("reason") or Suppression.Reason.MANUAL
        try:
            address = parse_mailbox(record.get("address", "")).envelope_address.lower()
        except AddressError as exc:
            result.errors.append((line, str(exc)))
            continue
        if reason not in Suppression.Reason.values:
            result.errors.append((line, f"unknown reason {reason!r}"))
            continue
        _, created = suppression_add(
            organization_id=organization.pk, address=address, reason=reason, created_by=created_by
        )
        result.added += created
        result.existing += not created
    return result
