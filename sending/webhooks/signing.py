"""The Postwerk-Signature header: `t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`. Pure: no database.

While a rotated secret's overlap lasts the header carries one v1 per secret; a receiver accepts the request if
any of them matches its secret. The timestamp is signed with the body, so an old request cannot be replayed
with a new time, and receivers refuse timestamps older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "Postwerk-Signature"
EVENT_ID_HEADER = "Postwerk-Event-Id"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DEFAULT_TOLERANCE = 300


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(body: bytes, signing_secrets: list[str], timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={timestamp}", *(f"v1={_mac(s, timestamp, body)}" for s in signing_secrets)])


def signature_verify(
    header: str, body: bytes, secret: str, *, tolerance: int = DEFAULT_TOLERANCE, now: float | None = None
) -> bool:
    """What a receiver does (the README has the same few lines): the timestamp is recent and one v1 matches."""
    items = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in items if k == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    timestamp = int(timestamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v) for k, v in items if k == "v1")
