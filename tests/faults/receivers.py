"""Broken recipient MX hosts on loopback: plain asyncio TCP servers that misbehave in one named way each.

aiosmtpd cannot be made to break the protocol, so these speak just enough SMTP by hand to reach the point where
they misbehave. Each connection is one `Session` coroutine; the server runs on its own loop in a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType

__all__ = ["BEHAVIOURS", "BrokenReceiver"]

_STOP_TIMEOUT = 5.0
# Enough to read a whole small message; a line longer than this ends the session (nothing here needs one).
_LINE_LIMIT = 1 << 20


async def _read_command(reader: asyncio.StreamReader) -> bytes:
    return (await reader.readuntil(b"\r\n")).rstrip(b"\r\n")


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n.\r\n")


async def _hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Banner and an EHLO answer that offers PIPELINING, as almost every real MX does (RFC 2920)."""
    writer.write(b"220 broken.example ESMTP\r\n")
    await writer.drain()
    await _read_command(reader)
    writer.write(b"250-broken.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
    await writer.drain()


async def _answer_envelope(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data_reply: bytes
) -> bytes | None:
    """Answer MAIL and RCPT with 250 and DATA with `data_reply`; returns the DATA reply sent, None on QUIT."""
    while True:
        command = await _read_command(reader)
        verb = command[:4].upper()
        if verb == b"QUIT":
            writer.write(b"221 2.0.0 Bye\r\n")
            await writer.drain()
            return None
        if verb == b"DATA":
            writer.write(data_reply)
            await writer.drain()
            return data_reply
        writer.write(b"250 2.0.0 OK\r\n")  # EHLO again, MAIL, RCPT, RSET, NOOP
        await writer.drain()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: list[bytes]) -> None:
    """Accepts the connection and never says a word (a tarpit, or a firewall holding the SYN-ACK open)."""
    await reader.read()  # until the client gives up and closes


async def drop_after_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: list[bytes]) -> None:
    """Takes the whole message, then closes the connection instead of answering the final dot."""
    await _hello(reader, writer)
    if await _answer_envelope(reader, writer, b"354 End data with <CR><LF>.<CR><LF>\r\n") is None:
        return
    received.append(await _read_data(reader))
    writer.transport.abort()


async def hang_after_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: list[bytes]) -> None:
    """Takes the whole message and keeps it (as an MX that has queued it would), but its 250 never arrives:
    the sender cannot know the message got through. RFC 1047's duplicate-message window."""
    await _hello(reader, writer)
    if await _answer_envelope(reader, writer, b"354 End data with <CR><LF>.<CR><LF>\r\n") is None:
        return
    received.append(await _read_data(reader))
    await reader.read()  # until the client goes away


async def data_refused(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: list[bytes]) -> None:
    """250 to MAIL and RCPT, then 451 to DATA (a receiver whose spool is full): every transaction fails."""
    await _hello(reader, writer)
    while await _answer_envelope(reader, writer, b"451 4.3.1 Insufficient system storage\r\n") is not None:
        pass


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: list[bytes]) -> None:
    """A proper greeting, then bytes that are no SMTP reply at all for every command."""
    await _hello(reader, writer)
    while True:
        command = await _read_command(reader)
        if command[:4].upper() == b"QUIT":
            return
        writer.write(b"\x00\xff garbled \x1b[31m ??? \r\n")
        await writer.drain()


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]], Awaitable[None]]
BEHAVIOURS: dict[str, Behaviour] = {
    "silent": silent,
    "drop_after_data": drop_after_data,
    "hang_after_data": hang_after_data,
    "data_refused": data_refused,
    "garbage": garbage,
}


class BrokenReceiver:
    """One misbehaving MX on host:port, in a background thread; counts the connections it got and keeps the
    message data it read (never acknowledged with a 250)."""

    def __init__(self, host: str, port: int, behaviour: str) -> None:
        self.host, self.port = host, port
        self.behaviour = BEHAVIOURS[behaviour]
        self.connections = 0
        self.received: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self.behaviour(reader, writer, self.received)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away: that is its right
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def start(self) -> BrokenReceiver:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._session, self.host, self.port, limit=_LINE_LIMIT, reuse_address=True)
                )
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"broken-mx-{self.host}", daemon=True)
        self._thread.start()
        ready.wait(_STOP_TIMEOUT)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=_STOP_TIMEOUT / 2)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_STOP_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT)
            self._loop = self._thread = None

    def __enter__(self) -> BrokenReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
