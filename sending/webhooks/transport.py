"""One webhook POST, guarded so a customer's URL cannot reach into the platform's own network (SSRF).

The host is resolved once (through POSTWERK_DNS_SERVERS, like MX hosts), every address it has is checked, and
the connection goes to a checked address: a DNS answer that changes between the check and the connect
(rebinding) changes nothing. Loopback, private, link-local, shared (CGNAT), multicast and reserved addresses
are refused unless the operator allows them. http:// needs the operator's allowance too. Redirects are not
followed (a 3xx is a failed attempt), the whole exchange has a deadline, and at most
POSTWERK_WEBHOOK_MAX_RESPONSE_BYTES of the answer are read.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from django.conf import settings

from mail.dns import host_addresses
from mail.errors import PostwerkError

EXCERPT_CHARS = 1000


class TargetRefused(PostwerkError, ValueError):
    """The URL may not be called: its scheme, or an address its host resolves to."""


@dataclass(frozen=True)
class HttpResult:
    status: int | None  # None: no HTTP answer (refused, timeout, connection error)
    error: str = ""
    excerpt: str = ""
    duration_ms: int = 0
    ip: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    authorization: str | None


def target_parse(url: str, *, allow_http: bool | None = None) -> Target:
    allow_http = settings.POSTWERK_WEBHOOK_ALLOW_HTTP if allow_http is None else allow_http
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise TargetRefused("the URL must use https" if scheme in ("http", "https") else "the URL must be http(s)")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise TargetRefused(f"bad host name: {exc}") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path, authorization)


def address_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address wearing IPv6 clothes is judged as the IPv4 address it reaches.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def addresses_checked(host: str, *, allow_private: bool | None = None) -> list[str]:
    """Every address of `host`, all of them allowed; TargetRefused if any is not (or there is none)."""
    allow_private = settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE if allow_private is None else allow_private
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = host_addresses(host)
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    if not allow_private:
        blocked = [a for a in addresses if not address_public(a)]
        if blocked:
            raise TargetRefused(f"{host} resolves to a non-public address ({', '.join(blocked)})")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Talks to `ip` while the Host header (and TLS SNI and certificate check) name the URL's host."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned_ip, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # Certificates are verified against the system's CAs; loading them once per process is enough.
    return ssl.create_default_context()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls_context())
        self.pinned_ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned_ip, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _abort(conn: http.client.HTTPConnection) -> None:
    # The deadline passed: shutting the socket down ends whatever read or write is blocked on it.
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def post(url: str, body: bytes, headers: dict[str, str]) -> HttpResult:
    """POST `body`; never raises for an ordinary failure: the result says what happened."""
    started = time.monotonic()
    timeout = settings.POSTWERK_WEBHOOK_TIMEOUT

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = target_parse(url)
        addresses = addresses_checked(target.host)
    except TargetRefused as exc:
        return HttpResult(None, error=f"refused: {exc}", duration_ms=elapsed())
    headers = {**headers, "Content-Length": str(len(body))}
    if target.authorization:
        headers["Authorization"] = target.authorization
    deadline = started + timeout
    error = "no address could be reached"
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    for ip in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return HttpResult(None, error="timed out", duration_ms=elapsed(), ip=ip)
        conn = connection_class(target.host, target.port, ip, remaining)
        watchdog = threading.Timer(remaining, _abort, [conn])
        watchdog.daemon = True
        try:
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as exc:
                error = f"connection to {ip} failed: {_describe(exc)}"
                continue  # nothing was sent: the next address may answer
            watchdog.start()
            try:
                conn.request("POST", target.path, body=body, headers=headers)
                response = conn.getresponse()
                data = _read_capped(response, settings.POSTWERK_WEBHOOK_MAX_RESPONSE_BYTES, deadline)
            except (OSError, http.client.HTTPException) as exc:
                # The request may have arrived: another address would risk a second delivery now.
                late = time.monotonic() >= deadline
                return HttpResult(None, error="timed out" if late else _describe(exc), duration_ms=elapsed(), ip=ip)
            excerpt = data[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]
            return HttpResult(response.status, excerpt=excerpt, duration_ms=elapsed(), ip=ip)
        finally:
            watchdog.cancel()
            conn.close()
    return HttpResult(None, error=error[:500], duration_ms=elapsed())


def _read_capped(response: http.client.HTTPResponse, cap: int, deadline: float) -> bytes:
    chunks, size = [], 0
    while size < cap:
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out reading the response")
        chunk = response.read1(min(16384, cap - size)) if hasattr(response, "read1") else response.read(16384)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:500]
