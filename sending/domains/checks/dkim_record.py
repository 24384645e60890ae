"""DKIM key records (RFC 6376 §3.6.1, RFC 8463): parse one and check it publishes exactly our public key."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mail.errors import PostwerkError
from sending.domains.checks.spec import CheckResult, CheckStatus, DkimKeySpec, DomainSpec, error_result
from sending.domains.checks.tags import TagListError, parse_tag_list
from sending.domains.checks.txt import lookup_txt

_WHITESPACE = re.compile(r"\s+")


class DkimRecordError(PostwerkError, ValueError):
    """The record is not a usable DKIM key record; the message says why."""


@dataclass(frozen=True)
class DkimRecord:
    tags: dict[str, str]
    key_type: str  # k=, "rsa" when absent (RFC 6376 §3.6.1)
    public_key: bytes  # p= decoded; empty means the key is revoked
    hash_algorithms: tuple[str, ...]  # h=, empty = any
    service_types: tuple[str, ...]  # s=, default ("*",)
    flags: tuple[str, ...]  # t=

    @property
    def revoked(self) -> bool:
        return not self.public_key

    @property
    def testing(self) -> bool:
        return "y" in self.flags


def _colon_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(":") if part.strip())


def decode_base64(text: str) -> bytes:
    """Base64 with any whitespace inside ignored (RFC 6376 §3.6.1: p= is a base64string, which allows FWS)."""
    compact = _WHITESPACE.sub("", text)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DkimRecordError(f"p= is not valid base64 ({exc})") from exc


def parse_dkim_record(text: str) -> DkimRecord:
    """Parse a DKIM key record's text (its TXT strings already concatenated)."""
    try:
        pairs = parse_tag_list(text)
    except TagListError as exc:
        raise DkimRecordError(f"not a valid tag list: {exc}") from exc
    tags = dict(pairs)
    # RFC 6376 §3.6.1 v=: optional, but if present it MUST be first and exactly "DKIM1".
    if "v" in tags:
        if pairs[0][0] != "v":
            raise DkimRecordError("v=DKIM1 must be the first tag")
        if tags["v"] != "DKIM1":
            raise DkimRecordError(f"v={tags['v']} is not v=DKIM1")
    if "p" not in tags:
        raise DkimRecordError("the p= tag (the public key) is missing")
    return DkimRecord(
        tags=tags,
        key_type=tags.get("k", "rsa").strip().lower() or "rsa",
        public_key=decode_base64(tags["p"]),
        hash_algorithms=_colon_list(tags.get("h", "")),
        service_types=_colon_list(tags.get("s", "*")) or ("*",),
        flags=_colon_list(tags.get("t", "")),
    )


def dkim_record_value(key: DkimKeySpec) -> str:
    """The TXT value to publish for one key (RFC 6376 §3.6.1; k=ed25519 from RFC 8463 §4.2)."""
    return f"v=DKIM1; k={key.algorithm}; p={_WHITESPACE.sub('', key.public_key_b64)}"


def same_public_key(algorithm: str, ours: bytes, theirs: bytes) -> bool:
    """Compare decoded keys, not text. For RSA an equal key in the other DER form (PKCS#1 vs SPKI) counts."""
    if ours == theirs:
        return True
    if algorithm != "rsa":
        return False
    try:
        a = serialization.load_der_public_key(ours)
        b = serialization.load_der_public_key(theirs)
    except (ValueError, TypeError):
        return False
    if not (isinstance(a, rsa.RSAPublicKey) and isinstance(b, rsa.RSAPublicKey)):
        return False
    return a.public_numbers() == b.public_numbers()


def check_dkim(spec: DomainSpec, key: DkimKeySpec) -> CheckResult:
    """Is our key for ``key.selector`` published, intact and usable for email with sha256?"""
    name = key.record_name(spec.name)
    expected = dkim_record_value(key)
    details: dict = {"selector": key.selector, "algorithm": key.algorithm, "record_name": name, "expected": expected}
    found = lookup_txt(name)
    if found.failed:
        return error_result("dkim", f"Could not check DKIM selector {key.selector}: {found.detail}.", **details)
    if not found.found:
        return CheckResult(
            "dkim",
            CheckStatus.MISSING,
            f"No DKIM key at {name}. Add a TXT record at {name} with the value: {expected}",
            details,
        )
    details["found"] = found.records
    if len(found.records) > 1:
        # RFC 6376 §3.6.2.2: with several TXT records verifiers may use any of them; results are undefined.
        return _wrong(details, f"{name} has {len(found.records)} TXT records; keep only one, with: {expected}")
    try:
        record = parse_dkim_record(found.records[0])
    except DkimRecordError as exc:
        return _wrong(details, f"The DKIM record at {name} is invalid: {exc}. Replace it with: {expected}")
    details["tags"] = record.tags
    if record.revoked:
        # RFC 6376 §3.6.1: an empty p= means the key has been revoked.
        return _wrong(details, f"The DKIM key at {name} is revoked (empty p=). Replace the record with: {expected}")
    if record.key_type != key.algorithm:
        return _wrong(
            details,
            f"The DKIM record at {name} says k={record.key_type}, not k={key.algorithm}. Replace it with: {expected}",
        )
    # Both rsa-sha256 and ed25519-sha256 (RFC 8463 §3) hash with SHA-256.
    if record.hash_algorithms and "sha256" not in record.hash_algorithms:
        return _wrong(
            details,
            f"The DKIM record at {name} restricts h= to {':'.join(record.hash_algorithms)}, "
            f"which excludes sha256. Remove the h= tag (or include sha256).",
        )
    if "*" not in record.service_types and "email" not in record.service_types:
        return _wrong(
            details,
            f"The DKIM record at {name} is not for email (s={':'.join(record.service_types)}). Remove the s= tag.",
        )
    try:
        ours = decode_base64(key.public_key_b64)
    except DkimRecordError as exc:  # our own data is broken: not the owner's fault, so not "wrong"
        raise ValueError(f"DkimKeySpec {key.selector}: {exc}") from exc
    if not same_public_key(key.algorithm, ours, record.public_key):
        return _wrong(
            details, f"The DKIM record at {name} publishes a different public key. Replace it with: {expected}"
        )
    details["testing"] = record.testing
    message = f"The DKIM key for selector {key.selector} is published at {name}."
    if record.testing:
        # RFC 6376 §3.6.1 t=y: verifiers must treat signed mail like unsigned mail while testing.
        message += " It is in testing mode (t=y), so receivers may treat your mail as unsigned: remove t=y when done."
    return CheckResult("dkim", CheckStatus.OK, message, details)


def check_dkim_all(spec: DomainSpec) -> list[CheckResult]:
    return [check_dkim(spec, key) for key in spec.dkim_keys]


def _wrong(details: dict, message: str) -> CheckResult:
    return CheckResult("dkim", CheckStatus.WRONG, message, details)
