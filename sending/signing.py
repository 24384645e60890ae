"""DKIM signing: bytes and a key in, signed bytes out. No database here."""

from __future__ import annotations

from dataclasses import dataclass

import dkim

# RFC 6376 §5.4.1's recommended set; headers named twice are oversigned so nobody can add a second copy.
SIGNED_HEADERS = (
    b"from",
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"in-reply-to",
    b"references",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private_key: bytes  # PEM for RSA; base64 of the 32-byte seed for Ed25519


ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}


def dkim_sign(raw: bytes, *, domain: str, selector: str, private_key_pem: bytes, algorithm: str = "rsa") -> bytes:
    """Return `raw` with a DKIM-Signature header (relaxed/relaxed) prepended."""
    return dkim_sign_all(raw, [SigningKey(domain, selector, algorithm, private_key_pem)])


def dkim_sign_all(raw: bytes, keys: list[SigningKey]) -> bytes:
    """One DKIM-Signature per key (RFC 8463 §1: RSA and Ed25519 side by side), each over the unsigned message,
    so a verifier that knows only one algorithm still finds a signature it can check."""
    present = _header_names(raw)
    include = [h for h in SIGNED_HEADERS if h in present or h in (b"from", b"subject")]
    signatures = b""
    for key in keys:
        signatures += dkim.sign(
            raw,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
            linesep=b"\r\n",
            signature_algorithm=ALGORITHMS[key.algorithm],
        )
    return signatures + raw


def _header_names(raw: bytes) -> set[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in head.split(b"\r\n"):
        if line and line[:1] not in (b" ", b"\t"):
            names.add(line.split(b":", 1)[0].strip().lower())
    return names
