"""Was an outbound TLS session's certificate valid for the MX host? Recorded; enforced only where a policy says.

Delivery uses opportunistic TLS (RFC 3207 without authentication, Postfix's "may" level, RFC 7672 §1.3): the
handshake accepts any certificate, because refusing would only mean sending in plain text. This module then
says what a verifying client would have concluded, so each delivery records `verified`, `failed: <reason>`
or `none` (no TLS). The check uses the system's trust store (or `SSL_CERT_FILE`), plus the CAs of
`POSTWERK_EXTRA_CA_FILE`, and the web PKI rules of `cryptography`'s verifier: the chain up to a trusted root,
validity dates and the MX host name in the SAN. An MTA-STS policy in enforce mode (RFC 8461 §4.2) makes
`verified` a condition of delivery (sending.delivery.tls_policies); `https_context` is the same trust for the
HTTPS fetches of MTA-STS policies and TLS reports.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import ssl

from cryptography import x509
from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError
from django.conf import settings

__all__ = ["NONE", "VERIFIED", "https_context", "peer_chain", "verify_chain"]

VERIFIED = "verified"
NONE = "none"


def _mtime(path: str | None) -> float | None:
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None


def _load(cafile: str | None) -> list[x509.Certificate]:
    if not cafile:
        return []
    try:
        with open(cafile, "rb") as handle:
            return x509.load_pem_x509_certificates(handle.read())
    except (OSError, ValueError):
        return []


@functools.lru_cache(maxsize=4)
def _trust_store(cafile: str | None, mtime: float | None, extra: str | None, extra_mtime: float | None) -> Store | None:
    roots = _load(cafile) + _load(extra)
    return Store(roots) if roots else None


def _default_store() -> Store | None:
    paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE, like every OpenSSL client
    cafile = paths.cafile or paths.openssl_cafile
    extra = settings.POSTWERK_EXTRA_CA_FILE or None
    return _trust_store(cafile, _mtime(cafile), extra, _mtime(extra))


@functools.lru_cache(maxsize=4)
def _https_context(extra: str | None, extra_mtime: float | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if extra:
        context.load_verify_locations(cafile=extra)
    return context


def https_context() -> ssl.SSLContext:
    """A verifying client context: the system's CAs plus POSTWERK_EXTRA_CA_FILE's (rebuilt when that file changes)."""
    extra = settings.POSTWERK_EXTRA_CA_FILE or None
    return _https_context(extra, _mtime(extra))


def peer_chain(sock: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent (DER), leaf first; just the leaf where the chain is not exposed."""
    sslobj = getattr(sock, "_sslobj", None)
    # Python 3.11/3.12 have the chain only on the private object (public as get_unverified_chain in 3.13).
    getter = getattr(sock, "get_unverified_chain", None) or getattr(sslobj, "get_unverified_chain", None)
    if getter is not None:
        chain = getter() or []
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
    leaf = sock.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def verify_chain(chain: list[bytes], hostname: str, *, now: dt.datetime | None = None) -> str:
    """`verified`, or `failed: <why>` for a chain (DER, leaf first) presented by `hostname`."""
    if not chain:
        return "failed: no certificate presented"
    store = _default_store()
    if store is None:
        return "failed: no trust store available"
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
        name = DNSName(hostname.rstrip(".").lower())
    except ValueError as exc:
        return f"failed: {exc}"[:300]
    builder = PolicyBuilder().store(store).time(now or dt.datetime.now(dt.UTC))
    try:
        builder.build_server_verifier(name).verify(certs[0], certs[1:])
    except VerificationError as exc:
        return f"failed: {exc}"[:300]
    except ValueError as exc:  # a certificate cryptography cannot even parse into a chain
        return f"failed: {exc}"[:300]
    return VERIFIED
