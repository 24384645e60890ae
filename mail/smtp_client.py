"""One outbound SMTP session to one MX host, reused for several messages (RFC 5321)."""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from django.conf import settings

from mail.dns import host_addresses
from mail.errors import PostwerkError
from mail.tls_policy.decide import HostCheck
from mail.tls_policy.results import Failure, PolicyType
from mail.tls_verify import NONE, peer_chain, verify_chain

log = logging.getLogger(__name__)

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Reply:
    """What the remote server said, with the enhanced status (RFC 3463) split out."""

    code: int
    enhanced: str
    text: str
    # The reply refused MAIL FROM: it is about our sender, whatever it says (mail.bounces.reasons).
    at_mail_from: bool = field(default=False, compare=False)

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def success(self) -> bool:
        return 200 <= self.code < 300

    @classmethod
    def parse(cls, code: int, message: bytes | str) -> Reply:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        text = " ".join(text.split())
        if not 200 <= code <= 599:  # smtplib's -1: no reply code at all (RFC 5321 §4.2), so nothing can be trusted
            raise GarbledReply(f"not an SMTP reply: {text[:200]!r}")
        match = _ENHANCED.match(text)
        if match:
            return cls(code, match.group(0), text[match.end() :].strip())
        return cls(code, "", text)

    def __str__(self) -> str:
        return " ".join(p for p in (str(self.code), self.enhanced, self.text) if p)


class GarbledReply(smtplib.SMTPServerDisconnected):
    """The server answered with something that is no SMTP reply: the session is treated as lost."""


# RFC 5321 §4.5.2: a line of the content that starts with a period gets one more.
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


class SessionLost(PostwerkError):
    """The connection broke mid-transaction: what was in flight has an unknown outcome."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class TlsRequired(PostwerkError):
    """A policy requires TLS and the host did not offer it, or the handshake failed: no plain-text fallback."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


def _opportunistic_context() -> ssl.SSLContext:
    # Opportunistic TLS (RFC 3207 with no authentication, as Postfix's "may" level): an unverifiable
    # certificate still gets encryption, because the alternative is plain text.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SmtpSession:
    def __init__(
        self,
        *,
        mx_host: str,
        address: str,
        port: int,
        helo: str,
        connect_timeout: float,
        command_timeout: float,
        source_address: str | None = None,
    ) -> None:
        self.mx_host, self.address, self.port, self.helo = mx_host, address, port, helo
        # The local address the connection leaves from (a sending IP of a pool); None: the system's choice.
        self.source_address = source_address
        self.connect_timeout, self.command_timeout = connect_timeout, command_timeout
        self.tls = False
        # What a verifying client would have concluded of the certificate: verified, failed: <why>, or none.
        self.tls_verification = NONE
        self.peer_certs: list[bytes] = []  # the chain the server presented (DER, leaf first), for DANE
        self.local_address = ""  # our end of the connection (TLS-RPT's sending-mta-ip)
        # The policy that governed the session (mail.tls_policy) and what it concluded: "" or a result type.
        self.tls_policy = PolicyType.OPPORTUNISTIC
        self.tls_failure = ""
        self.tls_detail = ""
        self._smtp: smtplib.SMTP | None = None

    def open(self, *, try_tls: bool = True, require_tls: bool = False) -> None:
        """Connect, EHLO, STARTTLS when offered. Raises OSError/SMTPException when the host is unusable, and
        TlsRequired when `require_tls` and TLS could not be had (never falling back to plain text then)."""
        source = (self.source_address, 0) if self.source_address else None
        smtp = smtplib.SMTP(local_hostname=self.helo, timeout=self.connect_timeout, source_address=source)
        try:
            code, banner = smtp.connect(self.address, self.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, banner)
            if smtp.sock is not None:
                smtp.sock.settimeout(self.command_timeout)
                self.local_address = smtp.sock.getsockname()[0]
            smtp.ehlo_or_helo_if_needed()
            if require_tls and not smtp.has_extn("starttls"):
                raise TlsRequired(Failure.STARTTLS_NOT_SUPPORTED, f"{self.mx_host} does not offer STARTTLS")
            if try_tls and smtp.has_extn("starttls"):
                # smtplib sends its constructor's host as SNI; we connected by address, so name the MX host.
                smtp._host = self.mx_host
                try:
                    smtp.starttls(context=_opportunistic_context())
                    smtp.ehlo()
                    self.tls = True
                except (ssl.SSLError, smtplib.SMTPResponseException, OSError, ValueError) as exc:
                    if require_tls:
                        raise TlsRequired(
                            Failure.VALIDATION_FAILURE, f"TLS handshake with {self.mx_host} failed: {exc}"
                        ) from exc
                    # A broken TLS stack on the far side: start over in plain text rather than not deliver.
                    smtp.close()
                    self.open(try_tls=False)
                    return
                self.peer_certs = peer_chain(smtp.sock)
                self.tls_verification = verify_chain(self.peer_certs, self.mx_host)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp

    @property
    def max_size(self) -> int | None:
        assert self._smtp is not None
        value = self._smtp.esmtp_features.get("size", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    @property
    def supports_smtputf8(self) -> bool:
        assert self._smtp is not None
        return self._smtp.has_extn("smtputf8")

    def send(self, *, mail_from: str, rcpts: list[str], data: bytes, smtputf8: bool) -> dict[str, Reply]:
        """One mail transaction; returns the reply that decided each recipient's fate.

        Raises SessionLost when the connection breaks: the caller must treat in-flight recipients as deferred.
        """
        smtp = self._smtp
        assert smtp is not None
        options = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        if smtputf8:
            options.append("SMTPUTF8")
        if smtp.has_extn("8bitmime") and not data.isascii():
            options.append("BODY=8BITMIME")
        try:
            if smtp.has_extn("pipelining"):
                return self._send_pipelined(smtp, mail_from, rcpts, data, options, smtputf8)
            reply = Reply.parse(*smtp.mail(mail_from, options))
            if not reply.success:
                self._reset()
                return dict.fromkeys(rcpts, replace(reply, at_mail_from=True))
            results: dict[str, Reply] = {}
            accepted = []
            for rcpt in rcpts:
                results[rcpt] = Reply.parse(*smtp.rcpt(rcpt))
                if results[rcpt].success:
                    accepted.append(rcpt)
            if not accepted:
                self._reset()
                return results
            try:
                final = Reply.parse(*smtp.data(data))
            except smtplib.SMTPDataError as exc:  # the reply to DATA itself was not 354
                final = Reply.parse(exc.smtp_code, exc.smtp_error)
                self._reset()
            for rcpt in accepted:
                results[rcpt] = final
            return results
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.close()
            raise SessionLost(Reply(421, "4.4.2", f"connection to {self.mx_host} lost: {exc}")) from exc

    def probe(self, *, mail_from: str, rcpts: list[str], smtputf8: bool = False) -> tuple[Reply, list[Reply]]:
        """A transaction that stops before DATA (address verification): MAIL FROM, each RCPT TO, then RSET
        (RFC 5321 §4.1.1.5), so nothing is ever delivered. Returns the MAIL reply and one reply per recipient
        (none when MAIL was refused).

        `smtputf8` needs `supports_smtputf8` (RFC 6531). Raises SessionLost when the connection breaks or a reply
        does not come in time.
        """
        smtp = self._smtp
        assert smtp is not None
        try:
            mail = Reply.parse(*smtp.mail(mail_from, ["SMTPUTF8"] if smtputf8 else []))
            replies = [Reply.parse(*smtp.rcpt(rcpt)) for rcpt in rcpts] if mail.success else []
            self._reset()
            return mail, replies
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # No QUIT: after a timeout the server is not answering, and waiting for it again only doubles the cost.
            smtp.close()
            self._smtp = None
            raise SessionLost(Reply(421, "4.4.2", f"connection to {self.mx_host} lost: {exc}")) from exc

    def _send_pipelined(
        self, smtp: smtplib.SMTP, mail_from: str, rcpts: list[str], data: bytes, options: list[str], smtputf8: bool
    ) -> dict[str, Reply]:
        """RFC 2920: MAIL, every RCPT and DATA in one write, then the replies in order; one round trip instead of
        two plus one per recipient, which is most of the time per message on a fast network."""
        encoding = "utf-8" if smtputf8 else "ascii"
        extra = " " + " ".join(options) if options else ""
        commands = [f"MAIL FROM:{smtplib.quoteaddr(mail_from)}{extra}"]
        commands += [f"RCPT TO:{smtplib.quoteaddr(rcpt)}" for rcpt in rcpts]
        commands.append("DATA")
        smtp.send("".join(f"{c}\r\n" for c in commands).encode(encoding))
        mail = Reply.parse(*smtp.getreply())
        if not mail.success:
            mail = replace(mail, at_mail_from=True)
        results = {rcpt: Reply.parse(*smtp.getreply()) for rcpt in rcpts}
        go = Reply.parse(*smtp.getreply())
        accepted = [rcpt for rcpt, reply in results.items() if reply.success]
        if go.code != 354:
            # The server refused DATA (no valid recipient, or MAIL failed). A MAIL it accepted is still open
            # there, so the next transaction needs a RSET first (a second MAIL would be a 503).
            self._reset()
            if not mail.success:
                return dict.fromkeys(rcpts, mail)
            return {rcpt: (go if rcpt in accepted else reply) for rcpt, reply in results.items()}
        if not mail.success or not accepted:
            # RFC 2920 §3.1: a server that says 354 anyway gets an empty message it cannot deliver to anyone.
            smtp.send(b".\r\n")
            smtp.getreply()
            self._reset()
            return dict.fromkeys(rcpts, mail) if not mail.success else results
        body = _DOT_AT_LINE_START.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        smtp.send(body + b".\r\n")
        final = Reply.parse(*smtp.getreply())
        for rcpt in accepted:
            results[rcpt] = final
        return results

    def _reset(self) -> None:
        # The transaction's outcome is already known; a failed RSET only means the next message reconnects.
        try:
            assert self._smtp is not None
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    @property
    def is_open(self) -> bool:
        return self._smtp is not None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (TimeoutError, smtplib.SMTPException, OSError):
            smtp.close()


@dataclass(frozen=True)
class TlsResult:
    """One connection a transport security policy judged (TLS-RPT counts these, RFC 8460 §4.3)."""

    host: str
    address: str
    policy: PolicyType
    failure: Failure | None = None
    detail: str = ""
    local_address: str = ""


def open_to_host(
    host: str,
    addresses: list[str],
    *,
    connect_timeout: float,
    command_timeout: float,
    check: HostCheck | None = None,
    results: list[TlsResult] | None = None,
    source_address: str | None = None,
    helo: str | None = None,
) -> tuple[SmtpSession | None, Reply]:
    """A session with one MX host, trying each of its addresses in order; else why none could be opened.

    With a `check` (mail.tls_policy.decide), TLS is required where the policy says, and a session that fails an
    enforcing policy is closed before any mail goes (QUIT) and the next address tried; `results` collects what
    the policy concluded of each connection. `source_address` binds the connection to that local address, and
    `helo` is then its name (the EHLO name a receiver compares with the address's reverse DNS); without them,
    POSTWERK_HOSTNAME from the system's choice."""
    failure = Reply(421, "4.4.1", f"{host}: no address could be reached")
    require_tls = check is not None and check.require_tls
    for address in addresses:
        session = SmtpSession(
            mx_host=host,
            address=address,
            port=settings.POSTWERK_SMTP_DELIVERY_PORT,
            helo=helo or settings.POSTWERK_HOSTNAME,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            source_address=source_address,
        )
        try:
            session.open(require_tls=require_tls)
        except TlsRequired as exc:
            assert check is not None
            # RFC 3463 X.7.4 "security features not supported", as Postfix answers when TLS is required.
            failure = Reply(451, "4.7.4", f"{host} [{address}]: {_policy_words(check.policy)}: {exc}")
            if results is not None:
                results.append(TlsResult(host, address, check.policy, exc.failure, str(exc), session.local_address))
            log.info("TLS required by %s and not available at %s [%s]: %s", check.policy, host, address, exc)
            continue
        except Exception as exc:  # refused, timed out, TLS or protocol error: try the next address
            failure = Reply(421, "4.4.1", f"{host} [{address}]: {exc}")
            log.info("connection to %s [%s] failed: %s", host, address, exc)
            continue
        if check is not None:
            verdict, detail = check.judge(session)
            if check.refused is not None:  # a testing policy that would have refused the host: reported only
                verdict, detail = check.refused, check.detail
            session.tls_policy, session.tls_failure, session.tls_detail = check.policy, verdict or "", detail
            if results is not None:
                results.append(TlsResult(host, address, check.policy, verdict, detail, session.local_address))
            if verdict is not None and check.require_tls:
                session.close()
                # X.7.5 "cryptographic failure": the certificate did not authenticate the host.
                failure = Reply(451, "4.7.5", f"{host} [{address}]: {_policy_words(check.policy)}: {detail}")
                continue
        return session, Reply(220, "", "")
    return None, failure


# A host refused because the domain's MTA-STS policy could not be had (mail.tls_policy.decide: waiting for it).
_STS_NOT_FETCHED = (Failure.STS_POLICY_FETCH_ERROR, Failure.STS_WEBPKI_INVALID, Failure.STS_POLICY_INVALID)


def _policy_words(policy: PolicyType) -> str:
    return {
        PolicyType.DANE: "DANE (RFC 7672) requires an authenticated TLS session",
        PolicyType.MTA_STS_ENFORCE: "MTA-STS (RFC 8461) policy in enforce mode requires a valid certificate",
    }.get(policy, str(policy))


@dataclass
class RouteAttempt:
    """Where trying a route's MX hosts ended: a session, or the last failure (and, when `before` stopped the
    search, that it did)."""

    session: SmtpSession | None
    reply: Reply
    host: str | None = None
    stopped: bool = False
    tls_results: list[TlsResult] = field(default_factory=list)


def open_to_route(
    hosts: Iterable[str],
    *,
    connect_timeout: float,
    command_timeout: float,
    before: Callable[[str], Reply | None] | None = None,
    after_failure: Callable[[str], None] | None = None,
    tls_check: Callable[[str], HostCheck] | None = None,
    source_address: str | None = None,
    helo: str | None = None,
) -> RouteAttempt:
    """A session with the first reachable MX host, in the route's order (RFC 5321 §5.1), each of its addresses in
    turn. `before(host)` is asked first: a Reply ends the search with that answer (a connection limit, say);
    `after_failure(host)` undoes it when the host could not be reached. The one MX connect loop, shared by
    delivery and address verification.

    `tls_check(host)` (delivery) says what transport security policy governs each host (mail.tls_policy): a host
    an enforcing policy refuses is skipped without a connection, and every judged connection is listed in the
    result's `tls_results`."""
    results: list[TlsResult] = []
    failure = RouteAttempt(None, Reply(421, "4.4.1", "no MX host could be reached"), tls_results=results)
    for host in hosts:
        check = tls_check(host) if tls_check is not None else None
        if check is not None and check.refused is not None and check.require_tls:
            results.append(TlsResult(host, "", check.policy, check.refused, check.detail))
            words = (
                "MTA-STS (RFC 8461) policy published but not fetched"
                if check.refused in _STS_NOT_FETCHED
                else _policy_words(check.policy)
            )
            reply = Reply(451, "4.7.5", f"{host}: {words}: {check.detail}")
            failure = RouteAttempt(None, reply, host, tls_results=results)
            continue
        addresses = host_addresses(host)
        if not addresses:
            failure = RouteAttempt(
                None, Reply(421, "4.4.4", f"MX host {host} has no address"), host, tls_results=results
            )
            continue
        if before is not None:
            refused = before(host)
            if refused is not None:
                return RouteAttempt(None, refused, host, stopped=True, tls_results=results)
        if source_address and ":" not in source_address:
            addresses = [a for a in addresses if ":" not in a] or addresses  # an IPv4 source reaches IPv4 peers
        elif source_address:
            addresses = [a for a in addresses if ":" in a] or addresses
        session, reply = open_to_host(
            host,
            addresses,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            check=check,
            results=results,
            source_address=source_address,
            helo=helo,
        )
        if session is not None:
            return RouteAttempt(session, failure.reply, host, tls_results=results)
        failure = RouteAttempt(None, reply, host, tls_results=results)
        if after_failure is not None:
            after_failure(host)
    return failure
