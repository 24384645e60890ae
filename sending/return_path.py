"""The envelope sender of every delivery: a VERP bounce address per recipient delivery (`b-<token>@host`).

Bounces (DSNs) come back to it, and the token maps back to exactly one recipient row. It carries an HMAC, so no
one can forge an address that Postwerk would attribute to a delivery, and the recipient id alone is not enough.
The host is the sender domain's return-path subdomain once its DNS points at Postwerk (so SPF aligns with the
From domain for DMARC), else the platform's own return-path domain.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from django.conf import settings

PREFIX = "b-"
# The local part of the DMARC aggregate report address at each domain's return-path host (the recommended rua=).
DMARC_REPORTS_LOCAL_PART = "dmarc-reports"
_MAC_HEX = 12  # 48 bits of HMAC: forging one token takes ~2^47 tries against a server that rate-limits


def _mac(recipient_id: uuid.UUID) -> str:
    key = hashlib.sha256(b"postwerk-return-path:" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, recipient_id.bytes, hashlib.sha256).hexdigest()[:_MAC_HEX]


def return_path(recipient_id: uuid.UUID, host: str | None = None) -> str:
    return f"{PREFIX}{recipient_id.hex}{_mac(recipient_id)}@{host or settings.POSTWERK_RETURN_PATH_DOMAIN}"


def return_path_host(domain) -> str:  # type: ignore[no-untyped-def]
    """Where a domain's bounces go: its own return-path subdomain when that resolves to us."""
    if domain is not None and domain.return_path_ok:
        return domain.return_path_host
    return settings.POSTWERK_RETURN_PATH_DOMAIN


def dmarc_rua(domain) -> str:  # type: ignore[no-untyped-def]
    """The rua= a domain's DMARC record should name: the operator's POSTWERK_DMARC_RUA, else the domain's own
    return-path host, which shares the domain's organizational domain and so needs no authorisation record."""
    return settings.POSTWERK_DMARC_RUA or f"mailto:{DMARC_REPORTS_LOCAL_PART}@{domain.return_path_host}"


def is_verp(address: str) -> bool:
    local = address.strip("<>").rpartition("@")[0].lower()
    return local.startswith(PREFIX) and len(local) == len(PREFIX) + 32 + _MAC_HEX


def recipient_id_from_return_path(address: str) -> uuid.UUID | None:
    """The recipient delivery a bounce address belongs to, or None if it is not a valid one of ours."""
    if not is_verp(address):
        return None
    local = address.strip("<>").rpartition("@")[0].lower()
    try:
        recipient_id = uuid.UUID(hex=local[len(PREFIX) : len(PREFIX) + 32])
    except ValueError:
        return None
    return recipient_id if hmac.compare_digest(local[len(PREFIX) + 32 :], _mac(recipient_id)) else None
