"""Loopback recipient MX for tests: a real aiosmtpd server that records mail.

Behaviour knobs (``rcpt_replies``, ``mail_reply``, ``data_reply``,
``tempfail_next``, ``hang_on``/``hang_sessions``, ``data_gate``) are plain attributes read
at command time, so a test can flip them between deliveries without
restarting the sink.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import UnthreadedController
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["Received", "SmtpSink"]

HangStage = Literal["MAIL", "RCPT", "DATA"]

TEMPFAIL_REPLY = "451 4.3.0 Try again later"
_STOP_TIMEOUT = 5.0


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any
    tls: bool
    session_id: int
    smtputf8: bool
    received_at: float = field(default_factory=time.monotonic)
    helo: str = ""  # the client's EHLO/HELO name


class _SinkSMTP(SMTP):
    """One instance per TCP connection, so per-connection state lives here.

    aiosmtpd replaces ``session`` after STARTTLS, hence the session id and
    hang bookkeeping cannot live on the Session object.
    """

    sink_session_id: int = 0
    sink_hung: bool = False
    sink_on_lost: Any = None
    sink_active: bool = False  # counted in SmtpSink.active until QUIT or the connection ends

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            if self.sink_on_lost is not None:
                self.sink_on_lost(self)


class _SinkController(UnthreadedController):
    def __init__(self, sink: SmtpSink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink

    def factory(self) -> SMTP:
        smtp = _SinkSMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)
        self._sink._register(smtp)
        return smtp


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # Like every common MTA (RFC 2920); aiosmtpd itself copes with pipelined commands.
        if self.sink.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_QUIT(self, server: _SinkSMTP, session: Session, envelope: Envelope) -> str:
        # The session ends here for the concurrency count: the client frees its connection slot only after our
        # 221, so counting until connection_lost would race with its next connection.
        self.sink._session_ended(server)
        return "221 Bye"

    async def handle_MAIL(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if await self.sink._maybe_hang(server, envelope, "MAIL"):
            return TEMPFAIL_REPLY
        reply = self.sink.mail_reply or "250 2.1.0 OK"
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(
        self, server: _SinkSMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if getattr(envelope, "sink_hung", False) or await self.sink._maybe_hang(server, envelope, "RCPT"):
            return TEMPFAIL_REPLY
        reply = self.sink.rcpt_replies.get(address.lower(), "250 2.1.5 OK")
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server: _SinkSMTP, session: Session, envelope: Envelope) -> str:
        sink = self.sink
        if getattr(envelope, "sink_hung", False) or await sink._maybe_hang(server, envelope, "DATA"):
            return TEMPFAIL_REPLY
        if sink.tempfail_next > 0:
            sink.tempfail_next -= 1
            return TEMPFAIL_REPLY
        if sink.data_reply is not None:
            return sink.data_reply
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=raw,
            peer=session.peer,
            tls=session.ssl is not None,
            session_id=server.sink_session_id,
            smtputf8=bool(envelope.smtp_utf8),
            helo=session.host_name or "",
        )
        queue_id = sink._record(message)
        gate = sink.data_gate
        if gate is not None:  # a slow MX: it has the message, and answers the final dot once the gate opens
            sink.data_waiting += 1
            try:
                while not gate.is_set():
                    await asyncio.sleep(0.05)
            finally:  # also when the client went away meanwhile
                sink.data_waiting -= 1
        return f"250 2.0.0 OK queued as {queue_id}"


class SmtpSink:
    """aiosmtpd MX on ``host:port`` (port 0 = pick one) that records deliveries.

    After ``stop()`` a second ``start()`` rebinds the same port, which lets a
    test simulate an MX going away and coming back.
    """

    def __init__(
        self,
        host: str = "127.0.0.2",
        port: int = 0,
        *,
        tls_cert: tuple[str, str] | None = None,
        server_hostname: str = "sink.postwerk.test",
    ) -> None:
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        # Passed explicitly: without it aiosmtpd calls socket.getfqdn(),
        # which may block on a real DNS lookup.
        self.server_hostname = server_hostname

        self.messages: list[Received] = []
        self.connections = 0
        self.active = 0  # sessions open right now
        self.max_active = 0  # the most sessions that were ever open at once

        self.rcpt_replies: dict[str, str] = {}
        self.mail_reply: str | None = None
        self.data_reply: str | None = None
        self.tempfail_next = 0
        self.hang_on: HangStage | None = None
        self.hang_sessions = 1
        self.pipelining = True
        # A threading.Event: while it is not set, the reply to every message taken waits (counted in data_waiting).
        self.data_gate: threading.Event | None = None
        self.data_waiting = 0

        self._cond = threading.Condition()
        self._queue_seq = 0
        self._session_seq = 0
        self._live: set[_SinkSMTP] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._controller: _SinkController | None = None
        self._release: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SmtpSink:
        if self._thread is not None:
            raise RuntimeError("SmtpSink already started")
        tls_context: ssl.SSLContext | None = None
        if self.tls_cert is not None:
            tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls_context.load_cert_chain(*self.tls_cert)
        loop = asyncio.new_event_loop()
        # UnthreadedController in our own thread rather than Controller:
        # Controller.start() probes the server with a throwaway connection
        # to (hostname, port) and, with port=0, dials port 0 and fails; the
        # probe would also show up as a phantom session here.
        self._controller = _SinkController(
            self,
            _Handler(self),
            hostname=self.host,
            port=self.port,
            loop=loop,
            server_hostname=self.server_hostname,
            enable_SMTPUTF8=True,
            tls_context=tls_context,
            require_starttls=False,
        )
        self._loop = loop
        self._start_error = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"smtp-sink-{self.host}", daemon=True)
        self._thread.start()
        if not ready.wait(_STOP_TIMEOUT) or self._start_error is not None:
            error = self._start_error
            self._thread.join(_STOP_TIMEOUT)
            self._thread = None
            self._loop = None
            self._controller = None
            if error is not None:
                raise error
            raise TimeoutError(f"SmtpSink on {self.host}:{self.port} did not start")
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        controller = self._controller
        assert loop is not None and controller is not None
        asyncio.set_event_loop(loop)
        try:
            controller.begin()
            assert controller.server is not None
            self.port = controller.server.sockets[0].getsockname()[1]
            self._release = asyncio.Event()
        except BaseException as exc:  # surfaced to start()'s caller
            self._start_error = exc
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(_STOP_TIMEOUT)
        except Exception:  # noqa: S110 - best effort; the loop is stopped below regardless
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        self._thread = None
        self._loop = None
        self._controller = None
        self._release = None

    async def _shutdown(self) -> None:
        controller = self._controller
        assert controller is not None and controller.server is not None
        server = controller.server
        server.close()
        # Abort rather than close: close() would wait to flush to clients
        # that may never read, and hung sessions must not delay stop().
        for smtp in list(self._live):
            for transport in (smtp.transport, smtp._original_transport):
                if transport is not None:
                    transport.abort()  # type: ignore[attr-defined]
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_TIMEOUT / 2)
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=_STOP_TIMEOUT / 2)
        except TimeoutError:
            pass

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ test API

    def wait_for(self, n: int, timeout: float = 10) -> bool:
        """Block until at least ``n`` messages were recorded; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def release_hang(self) -> None:
        """Let hung sessions continue and stop hanging new ones.

        A released command is answered ``451 4.3.0`` and its transaction is
        never recorded. Set ``hang_on`` again to re-arm.
        """
        self.hang_on = None
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._do_release)

    def reset(self) -> None:
        """Forget recorded mail and restore default behaviour."""
        with self._cond:
            self.messages.clear()
            self.connections = 0
            self.max_active = self.active
        self.rcpt_replies = {}
        self.mail_reply = None
        self.data_reply = None
        self.tempfail_next = 0
        self.release_hang()
        self.hang_sessions = 1

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # ------------------------------------------------------------------ loop-thread side

    def _register(self, smtp: _SinkSMTP) -> None:
        with self._cond:
            self._session_seq += 1
            self.connections += 1
            smtp.sink_session_id = self._session_seq
            smtp.sink_active = True
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        smtp.sink_on_lost = self._lost
        self._live.add(smtp)

    def _session_ended(self, smtp: _SinkSMTP) -> None:
        with self._cond:
            if smtp.sink_active:
                smtp.sink_active = False
                self.active -= 1

    def _lost(self, smtp: _SinkSMTP) -> None:
        self._live.discard(smtp)
        self._session_ended(smtp)

    def _record(self, message: Received) -> int:
        with self._cond:
            self._queue_seq += 1
            self.messages.append(message)
            self._cond.notify_all()
            return self._queue_seq

    def _do_release(self) -> None:
        # Swap in a fresh event so a later hang_on waits again.
        old, self._release = self._release, asyncio.Event()
        if old is not None:
            old.set()

    async def _maybe_hang(self, server: _SinkSMTP, envelope: Envelope, stage: HangStage) -> bool:
        if self.hang_on != stage or server.sink_hung or self.hang_sessions <= 0:
            return False
        self.hang_sessions -= 1
        server.sink_hung = True
        if stage == "RCPT":
            # Recipients accepted before the hang must not turn into a
            # recorded message if the client carries on after release.
            envelope.sink_hung = True  # type: ignore[attr-defined]
        release = self._release
        assert release is not None
        await release.wait()
        return True

    def __repr__(self) -> str:
        return f"<SmtpSink {self.host}:{self.port} messages={len(self.messages)}>"
