"""DANE for SMTP (RFC 7672): an MX host's TLSA records and whether the certificate chain it presented matches.

DANE-EE (usage 3) pins the server's own certificate or key: a match is enough, with no name or date checks
(RFC 7672 §3.1.1). DANE-TA (usage 2) pins a trust anchor: some certificate of the presented chain must match,
and the server certificate must chain to it, be within its dates and name the MX host (RFC 7672 §3.1.2, §3.2).
PKIX-TA and PKIX-EE (0 and 1) are unusable for SMTP (RFC 7672 §3.1.3)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError

DANE_TA, DANE_EE = 2, 3


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        return self.usage in (DANE_TA, DANE_EE) and self.selector in (0, 1) and self.mtype in (0, 1, 2)

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


def tlsa_name(host: str, port: int = 25) -> str:
    return f"_{port}._tcp.{host.rstrip('.')}."


def from_rrset(rrset: object) -> list[Tlsa]:
    return [Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in rrset]  # type: ignore[attr-defined]


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def matches(record: Tlsa, cert: x509.Certificate) -> bool:
    data = _selected(cert, record.selector)
    if record.mtype == 1:
        data = hashlib.sha256(data).digest()
    elif record.mtype == 2:
        data = hashlib.sha512(data).digest()
    return data == record.data


def verify(
    chain: list[bytes], records: list[Tlsa], hostnames: list[str], *, now: dt.datetime | None = None
) -> str | None:
    """None when the chain (DER, leaf first) satisfies one usable record; else why not."""
    usable = [r for r in records if r.usable]
    if not chain:
        return "no certificate presented"
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        return f"unreadable certificate: {exc}"
    leaf = certs[0]
    if any(r.usage == DANE_EE and matches(r, leaf) for r in usable):
        return None
    why = "no certificate matches the TLSA records"
    for record in (r for r in usable if r.usage == DANE_TA):
        for anchor in certs[1:] or certs:
            if not matches(record, anchor):
                continue
            builder = PolicyBuilder().store(Store([anchor])).time(now or dt.datetime.now(dt.UTC))
            for name in hostnames:
                try:
                    builder.build_server_verifier(DNSName(name.rstrip(".").lower())).verify(leaf, certs[1:])
                    return None
                except (VerificationError, ValueError) as exc:
                    why = f"the chain does not validate to the DANE-TA certificate: {exc}"[:300]
    return why
