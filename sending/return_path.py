"""The envelope sender of every delivery: a per-message bounce address on the platform's return-path domain.

Bounces (DSNs) come back to it, and the token maps back to exactly one message. It carries an HMAC, so no one
can forge an address that Postwerk would attribute to a message, and the message id alone is not enough.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from django.conf import settings

PREFIX = "b-"
_MAC_HEX = 12  # 48 bits of HMAC: forging one token takes ~2^47 tries against a server that rate-limits


def _mac(message_id: uuid.UUID) -> str:
    key = hashlib.sha256(b"postwerk-return-path:" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, message_id.bytes, hashlib.sha256).hexdigest()[:_MAC_HEX]


def return_path(message_id: uuid.UUID) -> str:
    return f"{PREFIX}{message_id.hex}{_mac(message_id)}@{settings.POSTWERK_RETURN_PATH_DOMAIN}"


def message_id_from_return_path(address: str) -> uuid.UUID | None:
    """The message a bounce address belongs to, or None if it is not a valid one of ours."""
    local, _, domain = address.strip("<>").rpartition("@")
    local = local.lower()
    if not local.startswith(PREFIX) or len(local) != len(PREFIX) + 32 + _MAC_HEX:
        return None
    try:
        message_id = uuid.UUID(hex=local[len(PREFIX) : len(PREFIX) + 32])
    except ValueError:
        return None
    return message_id if hmac.compare_digest(local[len(PREFIX) + 32 :], _mac(message_id)) else None
