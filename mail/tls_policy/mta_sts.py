"""MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file fetched over HTTPS, and MX host matching.

Pure parsing plus one HTTPS fetch; caching and the decision what to do with a policy live elsewhere."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from dataclasses import dataclass, field

from django.conf import settings

from mail.dns import host_addresses
from mail.errors import PostwerkError
from mail.tls_verify import https_context

# RFC 8461 §3.1: id is 1 to 32 alphanumeric characters.
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
# RFC 8461 §3.2: max_age is at most 31557600 seconds (a year).
MAX_AGE_LIMIT = 31_557_600
# RFC 8461 §3.3: senders may limit the policy's size; 64 KiB is what the RFC suggests.
MAX_POLICY_BYTES = 64 * 1024
MODES = ("enforce", "testing", "none")


class PolicyError(PostwerkError, ValueError):
    """A policy (or its TXT record) that cannot be used; the text says why."""


class FetchError(PostwerkError):
    """The policy could not be fetched (no address, TLS, HTTP status, size, timeout); the text says why."""

    def __init__(self, message: str, *, webpki: bool = False) -> None:
        super().__init__(message)
        self.webpki = webpki  # the HTTPS certificate was the problem (TLS-RPT's sts-webpki-invalid)


def record_id(txt_strings: list[str]) -> str:
    """The policy id of a domain's `_mta-sts` TXT records (each given as its joined strings).

    RFC 8461 §3.1: records not starting with `v=STSv1` are discarded; anything but exactly one left, or a
    malformed one, means no usable record (PolicyError)."""
    records = [t for t in txt_strings if re.match(r"^v=STSv1\s*(;|$)", t)]
    if len(records) != 1:
        raise PolicyError(f"{len(records)} v=STSv1 TXT records (exactly one is required)")
    fields: dict[str, str] = {}
    for part in records[0].split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise PolicyError(f"malformed field {part!r} in the TXT record")
        fields.setdefault(key.strip(), value.strip())
    policy_id = fields.get("id", "")
    if not _ID.match(policy_id):
        raise PolicyError(f"TXT record id {policy_id!r} is not 1-32 letters and digits")
    return policy_id


@dataclass(frozen=True)
class Policy:
    mode: str
    max_age: int
    mx: tuple[str, ...] = field(default_factory=tuple)
    text: str = ""  # as served, for TLS-RPT's policy-string

    def matches(self, host: str) -> bool:
        return any(mx_matches(pattern, host) for pattern in self.mx)

    @property
    def lines(self) -> list[str]:
        """RFC 8460 §4.4's policy-string: the policy's lines."""
        return [line.strip() for line in self.text.splitlines() if line.strip()]


def parse_policy(text: str) -> Policy:
    """RFC 8461 §3.2: `key: value` lines (CRLF or LF); version, mode, max_age and, unless mode is none, mx."""
    version, mode, max_age = "", "", None
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"malformed policy line {line[:80]!r}")
        key, value = key.strip(), value.strip()
        if key == "version" and not version:
            version = value
        elif key == "mode" and not mode:
            mode = value
        elif key == "max_age" and max_age is None:
            if not value.isdigit() or len(value) > 10:
                raise PolicyError(f"max_age {value!r} is not a number of seconds")
            max_age = min(int(value), MAX_AGE_LIMIT)
        elif key == "mx":
            if not re.match(r"^(\*\.)?[A-Za-z0-9._-]+$", value):
                raise PolicyError(f"mx {value!r} is not a host name pattern")
            mx.append(value.lower().rstrip("."))
        # Unknown keys are ignored (§3.2: extensions).
    if version != "STSv1":
        raise PolicyError(f"version {version!r} (want STSv1)")
    if mode not in MODES:
        raise PolicyError(f"mode {mode!r} (want enforce, testing or none)")
    if max_age is None:
        raise PolicyError("no max_age")
    if mode != "none" and not mx:
        raise PolicyError(f"mode {mode} without any mx line")
    return Policy(mode=mode, max_age=max_age, mx=tuple(mx), text=text)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: an exact name, or `*.suffix` matching exactly one more label on the left."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return host == pattern


def policy_host(domain: str) -> str:
    return f"mta-sts.{domain.lower().rstrip('.')}"


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address we resolved (through POSTWERK_DNS_SERVERS); SNI and the certificate name the host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=https_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_policy(domain: str) -> Policy:
    """GET https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 §3.3) and parse it.

    The certificate must be valid for the host (the system's CAs and POSTWERK_EXTRA_CA_FILE); redirects are not
    followed; only a 200 with text/plain counts. Raises FetchError or PolicyError."""
    host = policy_host(domain)
    addresses = host_addresses(host)
    if not addresses:
        raise FetchError(f"{host} has no address")
    port, timeout = settings.POSTWERK_MTA_STS_PORT, settings.POSTWERK_MTA_STS_TIMEOUT
    error = f"{host}: no address could be reached"
    for address in addresses:
        conn = _PinnedHTTPSConnection(host, port, address, timeout)
        try:
            try:
                conn.connect()
            except ssl.SSLCertVerificationError as exc:
                raise FetchError(
                    f"{host} [{address}]: certificate not valid: {exc.verify_message}", webpki=True
                ) from exc
            except (OSError, ssl.SSLError) as exc:
                error = f"{host} [{address}]: {exc}"
                continue
            try:
                conn.request("GET", "/.well-known/mta-sts.txt", headers={"Host": host, "Accept": "text/plain"})
                response = conn.getresponse()
                body = response.read(MAX_POLICY_BYTES + 1)
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(f"{host} [{address}]: {type(exc).__name__}: {exc}") from exc
            if response.status != 200:  # §3.3: redirects are not followed, so a 3xx is a failure too
                raise FetchError(f"{host} answered HTTP {response.status}")
            content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if content_type != "text/plain":
                raise FetchError(f"{host} served the policy as {content_type or 'no content type'} (want text/plain)")
            if len(body) > MAX_POLICY_BYTES:
                raise FetchError(f"{host} served a policy larger than {MAX_POLICY_BYTES} bytes")
            try:
                return parse_policy(body.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise PolicyError("the policy is not UTF-8 text") from exc
        finally:
            conn.close()
    raise FetchError(error[:500])
