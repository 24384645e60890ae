"""DKIM key pairs: generation and the DNS record that publishes the public half (RFC 6376 §3.6.1)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

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


def generate_ed25519_keypair() -> KeyPair:
    """RFC 8463: p= is the raw 32-byte public key; dkimpy (via PyNaCl) takes the raw 32-byte seed, base64."""
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KeyPair(private_pem=base64.b64encode(seed), public_b64=base64.b64encode(public).decode("ascii"))
