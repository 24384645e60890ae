"""Invitations by email: an owner or admin invites an address with a role; whoever opens the emailed link and
logs in (or signs up) becomes a member with that role.

The link carries a 256-bit random token; only its SHA-256 is stored, like API keys, so a database dump lets
nobody join. A resend mints a new token (the old link stops working) and restarts the seven days.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Invitation, Membership
from accounts.secrets import hash_secret
from mail.errors import PostwerkError

Role = Membership.Role

logger = logging.getLogger(__name__)

INVITATION_TTL = timedelta(days=7)

# Turns a token into the absolute accept URL (the web layer knows the host the inviter used).
LinkBuilder = Callable[[str], str]


class InvitationError(PostwerkError, ValueError):
    pass


@dataclass(frozen=True)
class Sent:
    invitation: Invitation
    link: str  # shown once to the inviter as well: the only other copy is in the email
    error: str = ""  # why the email could not be sent ("" when it was)


def _assert_may_invite(actor: Membership, role: str) -> None:
    """The same rule as adding a member: owners and admins invite; only an owner invites an owner."""
    if actor.role not in (Role.OWNER, Role.ADMIN):
        raise InvitationError("Only owners and admins invite members.")
    if role not in Role.values:
        raise InvitationError(f"Unknown role {role!r}.")
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise InvitationError("Only an owner can invite an owner.")


def _new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hash_secret(token)


def _send(invitation: Invitation, link: str) -> Sent:
    inviter = invitation.invited_by.get_username() if invitation.invited_by else "Someone"
    body = (
        f"{inviter} invited you to join {invitation.organization.name} on Postwerk as {invitation.role}.\n\n"
        f"Accept the invitation here (log in, or create an account):\n{link}\n\n"
        f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        "If you did not expect this, ignore this email.\n"
    )
    try:
        send_mail(
            f"Join {invitation.organization.name} on Postwerk",
            body,
            settings.DEFAULT_FROM_EMAIL,
            [invitation.email],
            fail_silently=False,
        )
    except (OSError, smtplib.SMTPException) as exc:
        # The invitation stands: the inviter gets the link to hand over, or resends once mail works.
        logger.warning("invitation email to %s failed: %s", invitation.email, exc)
        return Sent(invitation, link, str(exc) or type(exc).__name__)
    return Sent(invitation, link)


def pending(qs=None):  # type: ignore[no-untyped-def]
    """Invitations still usable: not accepted, revoked or expired."""
    qs = Invitation.objects.all() if qs is None else qs
    return qs.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


def invitation_create(*, actor: Membership, email: str, role: str, link: LinkBuilder) -> Sent:
    """Invite `email` into the actor's organization and email the link. The link is also returned, to show
    once to the inviter (for when mail does not arrive). A pending invitation for the same address
    is replaced, so there is only ever one working link per address."""
    _assert_may_invite(actor, role)
    email = email.strip().lower()
    if not email or "@" not in email:
        raise InvitationError("Give an email address.")
    if Membership.objects.filter(organization_id=actor.organization_id, user__email__iexact=email).exists():
        raise InvitationError(f"{email} is already a member.")
    token, token_hash = _new_token()
    with transaction.atomic():
        pending(Invitation.objects.filter(organization_id=actor.organization_id, email=email)).update(
            revoked_at=timezone.now()
        )
        invitation = Invitation.objects.create(
            organization_id=actor.organization_id,
            email=email,
            role=role,
            token_hash=token_hash,
            invited_by=actor.user,
            expires_at=timezone.now() + INVITATION_TTL,
        )
        audit_record(
            organization=actor.organization_id,
            action="invitation.created",
            target=invitation,
            target_label=email,
            changes={"email": email, "role": role},
        )
    # Mail goes out after the commit: a failed send leaves a pending invitation the inviter can resend.
    return _send(invitation, link(token))


def invitation_resend(*, actor: Membership, invitation: Invitation, link: LinkBuilder) -> Sent:
    """A new link (the old one stops working) and seven more days."""
    _assert_may_invite(actor, invitation.role)
    if invitation.organization_id != actor.organization_id:
        raise InvitationError("No such invitation.")
    if invitation.accepted_at or invitation.revoked_at:
        raise InvitationError("That invitation was already accepted or revoked.")
    token, token_hash = _new_token()
    invitation.token_hash = token_hash
    invitation.expires_at = timezone.now() + INVITATION_TTL
    invitation.invited_by = actor.user
    invitation.save(update_fields=["token_hash", "expires_at", "invited_by"])
    return _send(invitation, link(token))


def invitation_revoke(*, actor: Membership, invitation: Invitation) -> Invitation:
    _assert_may_invite(actor, invitation.role)
    if invitation.organization_id != actor.organization_id:
        raise InvitationError("No such invitation.")
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        with transaction.atomic():
            invitation.save(update_fields=["revoked_at"])
            audit_record(
                organization=invitation.organization_id,
                action="invitation.revoked",
                target=invitation,
                target_label=invitation.email,
            )
    return invitation


def invitation_for_token(token: str) -> Invitation | None:
    """The usable invitation this link names, or None (unknown, used, revoked or expired: all look alike)."""
    if not token or len(token) > 100:
        return None
    return pending().select_related("organization", "invited_by").filter(token_hash=hash_secret(token)).first()


@transaction.atomic
def invitation_accept(*, token: str, user) -> Membership:  # type: ignore[no-untyped-def]
    """Make `user` a member with the invited role. The token is the proof: whoever holds the link may accept
    with the account they choose (people often log in with another address than the one invited)."""
    found = invitation_for_token(token)
    if found is None:
        raise InvitationError("This invitation link is not valid any more: it was used, revoked or has expired.")
    invitation = Invitation.objects.select_for_update().get(pk=found.pk)
    if invitation.accepted_at is not None or invitation.revoked_at is not None:  # accepted in a parallel request
        raise InvitationError("This invitation link is not valid any more: it was used, revoked or has expired.")
    if Membership.objects.filter(organization_id=invitation.organization_id, user=user).exists():
        raise InvitationError(f"You are already a member of {found.organization.name}.")
    membership = Membership.objects.create(organization_id=invitation.organization_id, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        organization=invitation.organization_id,
        action="member.joined",
        target=membership,
        target_label=user.get_username(),
        changes={"role": invitation.role, "invitation": invitation.email},
    )
    return membership
