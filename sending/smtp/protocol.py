"""aiosmtpd's SMTP protocol with Postwerk's rules: enhanced status codes everywhere, implicit TLS counted as
TLS, a cap on connections per IP, and a slower answer after failed AUTH attempts."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from mail.trace_headers import SmtpTrace
from sending.observability import metrics
from sending.reputation import overload
from sending.smtp.replies import with_enhanced_status

# A plain <dot-atom@domain> path, what nearly every client sends in MAIL FROM and RCPT TO. aiosmtpd parses
# every path with the RFC 5322 header parser (and defines a class per call), a quarter of a millisecond each;
# for this shape the answer is the same (the trailing whitespace is eaten as it would be), and anything else
# still goes through aiosmtpd's parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"\s*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>\s*")


class PostwerkSMTP(SMTP):
    def __init__(
        self,
        *args: Any,
        implicit_tls: bool = False,
        max_per_ip: int = 0,
        per_ip: Counter[str] | None = None,
        trusted_lookup: Callable[[str | None], Awaitable[Any]] | None = None,
        overload_check: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Resolves a peer address to the credential of a trusted network (no AUTH needed), or None.
        self._trusted_lookup = trusted_lookup
        self._implicit_tls = implicit_tls
        self._max_per_ip = max_per_ip
        # Open connections per source IP, shared by every listener of one server process.
        self._per_ip: Counter[str] = Counter() if per_ip is None else per_ip
        self._peer_ip: str | None = None
        self._plain_replies = False
        self._in_mail = False
        self.auth_delay = 0.0
        self._counted = False
        # Submission listeners turn new sessions away while the queue is over POSTWERK_OVERLOAD_QUEUE_DEPTH.
        self._overload_check = overload_check

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if not first:
            return  # the STARTTLS upgrade of a connection already counted
        if self._implicit_tls and transport.get_extra_info("ssl_object") is not None:
            # aiosmtpd only knows TLS that began with STARTTLS; on port 465 the socket is TLS from the start,
            # and AUTH (auth_require_tls) must see that.
            self._tls_protocol = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer_ip = peer[0] if isinstance(peer, tuple) else None
        metrics.SMTP_SESSIONS.inc()
        metrics.SMTP_SESSIONS_OPEN.inc()
        self._counted = True
        if self._peer_ip:
            self._per_ip[self._peer_ip] += 1
            if self._max_per_ip and self._per_ip[self._peer_ip] > self._max_per_ip:
                transport.write(b"421 4.7.0 Too many connections from your address\r\n")
                transport.close()
                return
        if self._overload_check and overload.overloaded_cached():
            # RFC 3463 4.3.2: the system is not accepting messages; the client tries again later.
            transport.write(f"{overload.SMTP_CONNECT_REPLY}\r\n".encode())
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            metrics.SMTP_SESSIONS_OPEN.dec()
        if self._peer_ip:
            self._per_ip[self._peer_ip] -= 1
            if self._per_ip[self._peer_ip] <= 0:
                del self._per_ip[self._peer_ip]
            self._peer_ip = None
        super().connection_lost(error)

    async def check_auth_needed(self, caller_method: str) -> bool:
        if not self.session.authenticated and self._trusted_lookup is not None:
            credential = await self._trusted_lookup(self._peer_ip)
            if credential is not None:
                self.session.authenticated, self.session.auth_data = True, credential
                self.session.postwerk_trusted = True  # type: ignore[attr-defined]
        return await super().check_auth_needed(caller_method)

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.5.3.2: say why before hanging up on an idle client (aiosmtpd just closes).
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"421 4.4.2 Idle timeout, closing connection\r\n")
        super()._timeout_cb()

    @property
    def peer_ip(self) -> str | None:
        return self._peer_ip

    def trace(self) -> SmtpTrace:
        """Where the current message comes from, for its Received header. TLS from STARTTLS or implicit (465);
        authenticated only when by AUTH, not by a trusted network."""
        session = self.session
        return SmtpTrace(
            helo=session.host_name or "",
            ip=self._peer_ip,
            esmtp=session.extended_smtp,
            tls=self._tls_protocol is not None,
            authenticated=session.authenticated and not getattr(session, "postwerk_trusted", False),
        )

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_PATH.match(arg)
        if match is None:
            return super()._getaddr(arg)
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[match.end() :]

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and not self._plain_replies:
            status = with_enhanced_status(status)
            if self._in_mail and status.startswith("553 5.1.3"):
                # aiosmtpd says 5.1.3 (bad destination) for a malformed MAIL FROM too; RFC 3463 has 5.1.7.
                status = "553 5.1.7 Bad sender address syntax"
            if status.startswith(("535", "454 4.7.0 Too many")) and self.auth_delay:
                delay, self.auth_delay = self.auth_delay, 0.0
                await asyncio.sleep(delay)
        await super().push(status)

    async def smtp_MAIL(self, arg: str) -> None:
        self._in_mail = True
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._in_mail = False

    # RFC 2034 §3: the replies to HELO and EHLO carry no enhanced status code.
    async def smtp_HELO(self, hostname: str) -> None:
        self._plain_replies = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._plain_replies = False

    async def smtp_EHLO(self, hostname: str) -> None:
        self._plain_replies = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._plain_replies = False
