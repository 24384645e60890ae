"""First run: make a person an organization's owner and give them a one-time sign-in link.

`manage.py provision --owner EMAIL` calls these. The link holds 256 random bits; only their SHA-256 is stored
(like API keys), it works once and for POSTWERK_SIGN_IN_LINK_TTL seconds, and using it is a conditional update,
so two clicks (or two web processes) cannot both sign in with it."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Membership, Organization, SignInLink
from accounts.secrets import hash_secret
from mail.errors import PostwerkError

Role = Membership.Role


class FirstRunError(PostwerkError, ValueError):
    pass


@transaction.atomic
def owner_attach(*, organization: Organization, email: str) -> tuple[object, Membership, bool]:
    """The user with this email (created, with no usable password, when there is none) as an owner of the
    organization: a new membership, or an existing one raised to owner. Returns (user, membership, user created)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 150:
        raise FirstRunError(f"{email!r} is not an email address Postwerk can use as a username.")
    user_model = get_user_model()
    user = (
        user_model.objects.filter(email__iexact=email).order_by("pk").first()
        or user_model.objects.filter(username__iexact=email).first()
    )
    created = user is None
    if created:
        user = user_model.objects.create_user(username=email, email=email)
        user.set_unusable_password()  # the sign-in link is the way in; they set a password afterwards
        user.save(update_fields=["password"])
    membership, new = Membership.objects.get_or_create(
        organization=organization, user=user, defaults={"role": Role.OWNER}
    )
    if new:
        audit_record(
            organization=organization,
            action="member.added",
            target=membership,
            target_label=user.get_username(),
            changes={"role": Role.OWNER, "new_account": created},
        )
    elif membership.role != Role.OWNER:
        before, membership.role = membership.role, Role.OWNER
        membership.save(update_fields=["role"])
        audit_record(
            organization=organization,
            action="member.role_changed",
            target=membership,
            target_label=user.get_username(),
            changes={"role": [before, Role.OWNER]},
        )
    return user, membership, created


def sign_in_link_create(*, user, organization: Organization | None = None) -> str:  # type: ignore[no-untyped-def]
    """A new one-time link's token (the only place it exists)."""
    token = secrets.token_urlsafe(32)
    SignInLink.objects.create(
        user=user,
        organization=organization,
        token_hash=hash_secret(token),
        expires_at=timezone.now() + timedelta(seconds=settings.POSTWERK_SIGN_IN_LINK_TTL),
    )
    return token


def sign_in_link_url(token: str) -> str:
    return f"{settings.POSTWERK_DASHBOARD_URL}/signin/{token}"


def sign_in_link_peek(token: str) -> SignInLink | None:
    """The usable link (unused, unexpired) this token names, without using it; None otherwise."""
    if not token or len(token) > 100:
        return None
    return (
        SignInLink.objects.select_related("user", "organization")
        .filter(token_hash=hash_secret(token), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def sign_in_link_use(token: str) -> SignInLink | None:
    """Use the link: the winner of one conditional update gets it; anyone else (a second click) gets None."""
    link = sign_in_link_peek(token)
    if link is None:
        return None
    now = timezone.now()
    won = SignInLink.objects.filter(pk=link.pk, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    return link if won else None
