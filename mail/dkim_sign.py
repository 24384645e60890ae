"""DKIM signing: bytes and a key in, signed bytes out. No database here.

Our own relaxed/relaxed signer (RFC 6376, RFC 8463). dkimpy's signing path spent most of the delivery worker's
signing time in Python (regex canonicalisation, header parsing, logger lookup, folding); this does the same work
with a handful of C-level bytes operations. The output is byte-identical to `dkim.sign(...)` with the parameters
Postwerk always used (relaxed/relaxed, CRLF, the `include` list below), quirks included, so receivers and our own
tests see exactly what they saw before; tests/test_signing.py holds it to that. dkimpy stays for verification.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim import KeyFormatError, MessageFormatError

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
    b"feedback-id",  # Gmail counts a Feedback-ID only when the sender's DKIM signature covers it
)


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private_key: bytes  # PEM for RSA; base64 of the 32-byte seed for Ed25519


ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}

CRLF = b"\r\n"
_HEADER_NAME = re.compile(rb"([\x21-\x7e]+?):")  # dkimpy's rfc822_parse: the name runs to the first colon
_LINE_END = re.compile(rb"\r?\n")
_FIELD_BREAK = re.compile(rb"\r\n(?![ \t])")
_NAME_CHARS = re.compile(rb"[\x21-\x7e]+")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP = re.compile(rb"[\t ]+")
# dkimpy's RE_BTAG: the b= tag's value, with any folding inside it, removed for the header hash.
_FWS = rb"(?:(?:\s*\r?\n)?\s+)?"
_BTAG = re.compile(rb"([;\s]b" + _FWS + rb"=)(?:" + _FWS + rb"[a-zA-Z0-9+/=])*(?:\r?\n\Z)?")
_PLAIN_NAME = re.compile(rb"[A-Za-z0-9._-]+")
_SIG_NAME = b"DKIM-Signature"
_PLACEHOLDER = b"0" * 60  # dkimpy folds with a 60-character b= first, so b= starts on its own line
_RSA_PADDING = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


# --- keys: parsed once per PEM / seed, since parsing costs more than an Ed25519 signature ----------------------


@lru_cache(maxsize=1024)
def _rsa_key(pem: bytes) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(str(exc)) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFormatError("not an RSA private key")
    return key


@lru_cache(maxsize=1024)
def _ed25519_key(seed_b64: bytes) -> ed25519.Ed25519PrivateKey:
    # What dkimpy does via PyNaCl: SigningKey(privkey, encoder=Base64Encoder), i.e. lenient b64decode, 32 bytes.
    seed = base64.b64decode(seed_b64)
    if len(seed) != 32:
        raise KeyFormatError("invalid ed25519 private key or format")
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def _sign_digest_input(algorithm: str, private_key: bytes, data: bytes) -> bytes:
    if algorithm == "rsa":
        return _rsa_key(private_key).sign(data, _RSA_PADDING, _SHA256)
    if algorithm == "ed25519":
        # RFC 8463 signs the SHA-256 of the header data, not the data itself.
        return _ed25519_key(private_key).sign(hashlib.sha256(data).digest())
    raise KeyError(algorithm)


# --- public API ----------------------------------------------------------------------------------------------


def dkim_sign(
    raw: bytes,
    *,
    domain: str,
    selector: str,
    private_key_pem: bytes,
    algorithm: str = "rsa",
    now: int | None = None,
) -> bytes:
    """Return `raw` with a DKIM-Signature header (relaxed/relaxed) prepended."""
    return dkim_sign_all(raw, [SigningKey(domain, selector, algorithm, private_key_pem)], now=now)


def dkim_sign_all(raw: bytes, keys: list[SigningKey], *, now: int | None = None) -> bytes:
    """One DKIM-Signature per key (RFC 8463 §1: RSA and Ed25519 side by side), each over the unsigned message,
    so a verifier that knows only one algorithm still finds a signature it can check.

    `now` fixes t= (tests); by default it is the current time, as dkimpy wrote it."""
    if not keys:
        return raw
    fields, names, body, clean = _parse(raw)
    # The same include list as always; from parsed names when that is the same as _header_names(raw).
    present = {n.lower() for n in names} if clean else _header_names(raw)
    include = [h for h in SIGNED_HEADERS if h in present or h in (b"from", b"subject")]
    # Both algorithms hash with SHA-256, so the body hash and the signed header block are shared by all keys.
    bh = base64.b64encode(hashlib.sha256(_canonical_body(body)).digest())
    signed_block = _canonical_headers(fields, names, include)
    stamp = str(int(time.time()) if now is None else now).encode("ascii")
    h_tag = b" : ".join(include)
    signatures = []
    for key in keys:
        domain = key.domain.encode("ascii")
        # dkimpy's tag order: v a c d i q s t h bh b.
        tags = b"".join(
            (
                b"v=1; a=",
                ALGORITHMS[key.algorithm],
                b"; c=relaxed/relaxed; d=",
                domain,
                b"; i=@",
                domain,
                b"; q=dns/txt; s=",
                key.selector.encode("ascii"),
                b"; t=",
                stamp,
                b"; h=",
                h_tag,
                b"; bh=",
                bh,
                b"; b=",
            )
        )
        # The header is hashed as dkimpy folded it with the placeholder b=, then b= emptied and canonicalised,
        # with no trailing CRLF. Folding matters here: a hard break inside a long token adds a space.
        folded = _fold(tags + _PLACEHOLDER, len(_SIG_NAME))
        if _PLAIN_NAME.fullmatch(domain) and _PLAIN_NAME.fullmatch(key.selector.encode("ascii")):
            # With no WSP, ';' or '=' in d= and s=, the only b= tag RE_BTAG can find is ours, the last one: cut
            # there instead of running that backtracking regex (it was a fifth of the remaining time).
            unsigned = b" " + folded[: folded.rindex(b"b=") + 2]
        else:
            unsigned = _BTAG.sub(rb"\1", b" " + folded)
        data = signed_block + b"dkim-signature:" + _canonical_value(unsigned)
        b = base64.b64encode(_sign_digest_input(key.algorithm, key.private_key, data))
        signatures.append(b"DKIM-Signature: " + _fold(tags + b + CRLF, len(_SIG_NAME)))
    signatures.append(raw)
    return b"".join(signatures)


def _header_names(raw: bytes) -> set[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in head.split(b"\r\n"):
        if line and line[:1] not in (b" ", b"\t"):
            names.add(line.split(b":", 1)[0].strip().lower())
    return names


# --- canonicalisation, mirroring dkimpy 1.1.x --------------------------------------------------------------


def _parse(raw: bytes) -> tuple[list[bytes], list[bytes], bytes, bool]:
    """dkimpy's rfc822_parse, split differently: each header field as one bytes (name, colon, value, folding
    kept), the field names as written, the CRLF-separated body, and whether `raw` needed no rewriting."""
    clean = raw.count(b"\n") == raw.count(CRLF)
    if not clean:  # a bare LF: dkimpy reads \r?\n as a line end and rejoins with CRLF
        raw = _LINE_END.sub(CRLF, raw)
    if raw.startswith(CRLF):
        return [], [], raw[2:], False
    end = raw.find(b"\r\n\r\n")
    if end == -1:
        head, body = (raw[:-2] if raw.endswith(CRLF) else raw), b""
    else:
        head, body = raw[:end], raw[end + 4 :]
    # Fast path: one field per CRLF not followed by WSP; the name runs to the first colon and must be printable
    # ASCII without spaces, which is what dkimpy's `([\x21-\x7e]+?):` accepts (a leading colon goes the slow way).
    fields = _FIELD_BREAK.split(head)
    colons = [f.find(b":") for f in fields]
    if min(colons) > 0:
        names = [f[:c] for f, c in zip(fields, colons, strict=True)]
        if _NAME_CHARS.fullmatch(b"".join(names)):
            return fields, names, body, clean
    return *_parse_lines(head), body, False


def _parse_lines(head: bytes) -> tuple[list[bytes], list[bytes]]:
    """The line-by-line parse, for what the fast path does not take: mbox From_ lines, errors."""
    fields: list[bytes] = []
    names: list[bytes] = []
    for line in head.split(CRLF):
        if line[:1] in (b" ", b"\t"):
            if not fields:  # dkimpy fails here too (with an IndexError)
                raise MessageFormatError(f"Continuation line before the first header: {line!r}")
            fields[-1] += CRLF + line
            continue
        m = _HEADER_NAME.match(line)
        if m is not None:
            fields.append(line)
            names.append(m.group(1))
        elif not line.startswith(b"From "):  # an mbox From_ line is skipped, like dkimpy does
            raise MessageFormatError(f"Unexpected characters in RFC822 header: {line}")
    return fields, names


def _canonical_value(value: bytes) -> bytes:
    """Relaxed header value (RFC 6376 §3.4.2) as dkimpy does it: unfold, WSP runs to one space, strip."""
    value = value.replace(CRLF, b"")  # the input is CRLF-only by now, so this is dkimpy's \r?\n removal
    if b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", value)
    return value.strip()


def _canonical_headers(fields: list[bytes], names: list[bytes], include: list[bytes]) -> bytes:
    """The signed headers, relaxed, in h= order: a name's n-th mention in h= signs its n-th instance from the
    bottom; mentions beyond the instances present sign nothing (dkimpy's select_headers), which is what makes
    oversigning work: a copy added later breaks the signature."""
    instances: dict[bytes, list[int]] = {}
    for i, name in enumerate(names):
        instances.setdefault(name.lower(), []).append(i)
    out = []
    for h in include:
        found = instances.get(h)
        if found:
            field = fields[found.pop()]
            out.append(b"%s:%s\r\n" % (h, _canonical_value(field[len(h) + 1 :])))
    return b"".join(out)


def _canonical_body(body: bytes) -> bytes:
    """Relaxed body (RFC 6376 §3.4.4) exactly as dkimpy computes it, including its quirk of keeping trailing
    WSP on a last line that has no CRLF."""
    if b"\t" in body or b" \r\n" in body:
        body = _TRAILING_WSP.sub(CRLF, body)
    if b"\t" in body or b"  " in body:
        body = _WSP.sub(b" ", body)
    if not body.endswith(CRLF):
        return body + CRLF if body else b""
    stripped = body.rstrip(b"\r\n")
    tail = len(body) - len(stripped)
    if tail % 2 == 0 and body.endswith(CRLF * (tail // 2)):
        return stripped + CRLF if stripped else b""
    # A bare CR among the trailing line ends: count CRLF pairs from the end as dkimpy does.
    end = len(body)
    while body.endswith(CRLF, 0, end - 2):
        end -= 2
    body = body[:end]
    return b"" if body == CRLF else body


def _fold(header: bytes, namelen: int) -> bytes:
    """dkimpy's fold(): break at the last space before column 72 (the name counts on the first line), hard
    break a longer token, and let the trailing CRLF count towards the length, as dkimpy does."""
    maxleng = 72 - namelen
    if len(header) <= maxleng:
        return header
    if len(header) - header.rfind(CRLF) == 2 and len(header) <= maxleng + 2:
        return header
    i = header.rfind(b"\r\n ")
    if i == -1:
        pre = b""
    else:
        pre, header = header[: i + 3], header[i + 3 :]
    parts = [pre]
    while len(header) > maxleng:
        i = header.rfind(b" ", 0, maxleng)
        if i == -1:
            parts.append(header[:maxleng] + b"\r\n ")
            header = header[maxleng:]
        else:
            parts.append(header[:i] + b"\r\n ")
            header = header[i + 1 :]
        maxleng = 71
    parts.append(header)
    return b"".join(parts)
