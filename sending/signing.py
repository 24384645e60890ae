"""DKIM signing: bytes and a key in, signed bytes out. No database here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import dkim
import dkim.crypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

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


# dkimpy does the RSA step with Python's pow(): about 11 ms per 2048-bit signature, the largest single cost of
# delivery. OpenSSL (through `cryptography`) does it in about 1 ms and gives byte-identical PKCS#1 v1.5
# signatures, so dkimpy's canonicalisation and header hashing stay as they are and only that step is swapped.
# dkimpy has no hook for it; it calls the module-level names below, which are replaced once at import.
_keys: dict[int, rsa.RSAPrivateKey] = {}
_keys_lock = threading.Lock()


def _openssl_key(private_key: dict) -> rsa.RSAPrivateKey:
    modulus = private_key["modulus"]
    key = _keys.get(modulus)
    if key is None:
        numbers = rsa.RSAPrivateNumbers(
            p=private_key["prime1"],
            q=private_key["prime2"],
            d=private_key["privateExponent"],
            dmp1=private_key["exponent1"],
            dmq1=private_key["exponent2"],
            iqmp=private_key["coefficient"],
            public_numbers=rsa.RSAPublicNumbers(private_key["publicExponent"], modulus),
        )
        key = numbers.private_key()
        with _keys_lock:
            if len(_keys) > 1024:
                _keys.clear()
            _keys[modulus] = key
    return key


_HASHES = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}  # noqa: S303 - rsa-sha1 is what dkimpy may ask for


def _rsa_sign_openssl(hash, private_key: dict) -> bytes:  # noqa: A002 - dkimpy's parameter name
    algorithm = _HASHES[hash.name]
    return _openssl_key(private_key).sign(hash.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))


@lru_cache(maxsize=1024)
def _parse_pem_private_key(data: bytes) -> dict:
    return dkim.crypto.parse_pem_private_key(data)


dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign_openssl
dkim.parse_pem_private_key = _parse_pem_private_key


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
