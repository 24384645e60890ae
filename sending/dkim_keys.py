"""DKIM key pairs: generation and the DNS record that publishes the public half (RFC 6376 §3.6.1)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_BITS = 2048


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_b64: str  # the p= tag


def generate_rsa_keypair(bits: int = RSA_BITS) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # DKIM's p= for RSA is the SubjectPublicKeyInfo DER, base64 (RFC 6376 §3.6.1).
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private_pem=private_pem, public_b64=base64.b64encode(public_der).decode("ascii"))
