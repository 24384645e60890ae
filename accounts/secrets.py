"""Generating and hashing the secrets applications present (API keys; SMTP passwords later)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

API_KEY_PREFIX = "pwk"


def generate_api_key(prefix: str | None = None) -> tuple[str, str, str]:
    """Return (full key, public prefix, hash). The full key is shown once and never stored. A rotation keeps
    the key's prefix (the key stays recognisable in lists and logs) and draws a new secret part."""
    prefix = prefix or secrets.token_hex(4)
    key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_secret(key)


def generate_smtp_credential() -> tuple[str, str, str]:
    """Return (username, password, password hash). 192 random bits: a fast hash is as good as a slow one."""
    username = f"pw-{secrets.token_hex(6)}"
    # Never a leading "-": command-line clients (swaks, curl --user) would read the password as an option.
    password = "pw" + secrets.token_urlsafe(24)
    return username, password, hash_secret(password)


SES_ACCESS_KEY_PREFIX = "PWKS"


def generate_ses_access_key() -> tuple[str, str]:
    """Return (access key id, secret access key), shaped like AWS's (20 upper-case characters; 40 characters) so
    that SDKs and settings that check the form accept them. The id carries 80 random bits (it only names the key);
    the secret 240."""
    access_key_id = SES_ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()[:16]
    # base64 without "/" and "+": it goes into shell variables and URLs' userinfo unquoted.
    secret = base64.b64encode(secrets.token_bytes(30), altchars=b"Az").decode()
    return access_key_id, secret


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1]:
        return None
    return parts[1]


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
