"""Encryption at rest for secrets Postwerk must be able to read back (DKIM private keys)."""

from __future__ import annotations

from cryptography.fernet import Fernet
from django.conf import settings


def _fernet() -> Fernet:
    return Fernet(settings.POSTWERK_ENCRYPTION_KEY)


def encrypt(plaintext: bytes) -> str:
    return _fernet().encrypt(plaintext).decode("ascii")


def decrypt(token: str) -> bytes:
    return _fernet().decrypt(token.encode("ascii"))
