"""Two-factor sign-in: a TOTP authenticator (RFC 6238) and single-use recovery codes, as django-otp devices.

django-otp does the cryptography, the clock-drift window, replay protection (a TOTP code is accepted once) and
the throttling of wrong codes (each failure doubles the wait before the device checks another); this module
only decides which devices a person has and what the dashboard may do with them.

A person has two-factor once their TOTP device is confirmed (they typed a code from it); the recovery codes
come with it and are shown once. An organization may require two-factor of every member
(Organization.require_two_factor): members without it are sent to enrolment before anything else.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import segno
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership

TOTP_NAME = "authenticator"
RECOVERY_NAME = "recovery codes"
RECOVERY_CODES = 10


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the otpauth:// URL as a QR code, and the secret for typing in by hand."""

    device: TOTPDevice
    secret: str  # base32, as authenticator apps expect it
    qr_svg_data_uri: str


def has_two_factor(user: AbstractBaseUser) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def two_factor_users(user_ids) -> set[int]:  # type: ignore[no-untyped-def]
    """Which of these people have two-factor (one query, for the members list)."""
    return set(TOTPDevice.objects.filter(user_id__in=user_ids, confirmed=True).values_list("user_id", flat=True))


def two_factor_required(user: AbstractBaseUser) -> bool:
    """Whether an organization this person belongs to requires two-factor of its members."""
    return Membership.objects.filter(user=user, organization__require_two_factor=True).exists()


def enrolment_start(*, user: AbstractBaseUser) -> Enrolment:
    """The person's unconfirmed authenticator (a new secret on first visit, the same one on reload, so a
    half-finished enrolment scanned once still works)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)
    qr = segno.make(device.config_url, error="m")
    return Enrolment(
        device=device,
        secret=base64.b32encode(device.bin_key).decode().rstrip("="),
        qr_svg_data_uri=qr.svg_data_uri(scale=5, border=2),
    )


def enrolment_confirm(*, user: AbstractBaseUser, code: str) -> tuple[TOTPDevice, list[str]] | None:
    """Confirm the authenticator with a code it shows; returns it with a fresh set of recovery codes (shown
    once), or None when the code is wrong. Any earlier authenticator and codes are replaced."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None or not device.verify_token(_digits(code)):
        return None
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = recovery_codes_renew(user=user)
    return device, codes


def recovery_codes_renew(*, user: AbstractBaseUser) -> list[str]:
    """A new set of single-use recovery codes; the old ones stop working."""
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def recovery_codes_left(user: AbstractBaseUser) -> int:
    return StaticToken.objects.filter(device__user=user).count()


def code_check(*, user: AbstractBaseUser, code: str) -> TOTPDevice | StaticDevice | None:
    """The device that accepts this code: the authenticator (six digits) or a recovery code (used up). Each
    device counts its own failures and makes the next try wait (django-otp's throttling)."""
    code = code.strip().replace(" ", "")
    if not code:
        return None
    for device in TOTPDevice.objects.filter(user=user, confirmed=True):
        if code.isdigit() and device.verify_token(code):
            return device
    for device in StaticDevice.objects.filter(user=user, confirmed=True):
        if device.verify_token(code.lower()):
            return device
    return None


def two_factor_disable(*, user: AbstractBaseUser) -> None:
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()


def _digits(code: str) -> str:
    return code.strip().replace(" ", "")
