"""Running the SMTP listeners: one event loop in a thread (tests) or in the foreground (`manage.py smtpserver`)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from mail.tls_certs import make_self_signed
from sending.delivery.queueing import BackgroundPublisher
from sending.smtp.inbound import inbound_protocol
from sending.smtp.submission import message_committer, submission_protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    name: str
    host: str
    port: int
    implicit_tls: bool
    role: str = "submission"  # "submission" (AUTH, sends mail) or "inbound" (bounces and reports in)


def parse_listen(setting: str, value: str) -> tuple[str, int] | None:
    if value.strip().lower() in ("", "off", "no", "false", "0"):
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ImproperlyConfigured(f"{setting}: expected host:port or off, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means every interface


def configured_listeners() -> list[Listener]:
    listeners = []
    for name, setting, implicit, role in (
        ("submission (STARTTLS)", "POSTWERK_SMTP_SUBMISSION", False, "submission"),
        ("submissions (implicit TLS)", "POSTWERK_SMTP_SUBMISSIONS", True, "submission"),
        ("inbound MX", "POSTWERK_SMTP_INBOUND", False, "inbound"),
    ):
        address = parse_listen(setting, getattr(settings, setting))
        if address:
            listeners.append(Listener(name, address[0], address[1], implicit, role))
    return listeners


def tls_context() -> ssl.SSLContext:
    cert, key = settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY
    if not (cert and key):
        if not settings.EMBEDDED:
            raise ImproperlyConfigured(
                "POSTWERK_SMTP_TLS_CERT and POSTWERK_SMTP_TLS_KEY must be set: AUTH is only offered over TLS"
            )
        directory = Path(settings.DATA_DIR) / "tls"
        cert, key = (
            str(directory / f"{settings.POSTWERK_HOSTNAME}.crt"),
            str(directory / f"{settings.POSTWERK_HOSTNAME}.key"),
        )
        if not (Path(cert).exists() and Path(key).exists()):
            cert, key = make_self_signed(directory, settings.POSTWERK_HOSTNAME)
            log.warning("using a generated self-signed certificate for SMTP: %s", cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # RFC 8996 deprecates TLS 1.0 and 1.1, and RFC 8314 §4.1 wants current TLS for submission.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class SmtpServer:
    """The configured listeners on one asyncio loop, run in a background thread or the foreground."""

    def __init__(self, listeners: list[Listener] | None = None, *, reuse_port: bool = False) -> None:
        self.listeners = configured_listeners() if listeners is None else listeners
        # Several server processes on the same ports (`smtpserver --processes`): the kernel spreads connections.
        self.reuse_port = reuse_port
        self.bound: dict[str, tuple[str, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._per_ip: Counter[str] = Counter()
        self._publisher = BackgroundPublisher()

    async def _start(self) -> None:
        context = tls_context()
        committer = message_committer(self._publisher)
        for listener in self.listeners:
            if listener.role == "inbound":
                factory = inbound_protocol(tls_context=context, per_ip=self._per_ip)
            else:
                factory = submission_protocol(
                    tls_context=context, implicit_tls=listener.implicit_tls, per_ip=self._per_ip, committer=committer
                )
            server = await asyncio.get_running_loop().create_server(
                factory,
                listener.host,
                listener.port,
                ssl=context if listener.implicit_tls else None,
                reuse_address=True,
                reuse_port=self.reuse_port or None,
            )
            self._servers.append(server)
            self.bound[listener.name] = server.sockets[0].getsockname()[:2]
            log.info("SMTP %s listening on %s:%s", listener.name, *self.bound[listener.name])

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        await asyncio.to_thread(self._publisher.shutdown)

    async def serve(self) -> None:
        """Run in the foreground until cancelled."""
        self._stopped = asyncio.Event()
        await self._start()
        try:
            await self._stopped.wait()
        finally:
            await self._stop()

    def start(self) -> SmtpServer:
        """Run in a daemon thread; returns once every listener is bound."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="smtp-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
