"""DKIM signing: bytes and a key in, signed bytes out. No database here."""

from __future__ import annotations

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


def dkim_sign(raw: bytes, *, domain: str, selector: str, private_key_pem: bytes) -> bytes:
    """Return `raw` with a DKIM-Signature header (relaxed/relaxed, rsa-sha256) prepended."""
    present = _header_names(raw)
    include = [h for h in SIGNED_HEADERS if h in present or h in (b"from", b"subject")]
    signature = dkim.sign(
        raw,
        selector.encode("ascii"),
        domain.encode("ascii"),
        private_key_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
        linesep=b"\r\n",
    )
    return signature + raw


def _header_names(raw: bytes) -> set[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in head.split(b"\r\n"):
        if line and line[:1] not in (b" ", b"\t"):
            names.add(line.split(b":", 1)[0].strip().lower())
    return names
