"""A fast counting SMTP sink for benchmarks: aiosmtpd in its own process, bodies thrown away.

The driver reads the counters from shared memory (a RawArray of doubles written only by the sink's
event loop), so polling them costs the sink nothing. Times are time.monotonic(), which on Linux is the
system-wide CLOCK_MONOTONIC and therefore comparable with the driver's clock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

# Indexes into the shared counter array.
MESSAGES = 0  # DATA transactions accepted
RECIPIENTS = 1  # RCPT TO addresses in those transactions
UNIQUE = 2  # distinct recipient addresses seen
FIRST_AT = 3  # monotonic time of the first accepted message
LAST_AT = 4  # monotonic time of the last accepted message
LAST_UNIQUE_AT = 5  # monotonic time a new distinct recipient was last seen
BYTES = 6  # message bytes received
CONNECTIONS = 7  # SMTP connections accepted
SLOTS = 8


class _CountingHandler:
    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.seen: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        now = time.monotonic()
        s = self.stats
        if s[MESSAGES] == 0:
            s[FIRST_AT] = now
        s[MESSAGES] += 1
        s[RECIPIENTS] += len(envelope.rcpt_tos)
        s[BYTES] += len(envelope.content or b"")
        s[LAST_AT] = now
        new = False
        for rcpt in envelope.rcpt_tos:
            key = rcpt.lower()
            if key not in self.seen:
                self.seen.add(key)
                new = True
        if new:
            s[UNIQUE] = len(self.seen)
            s[LAST_UNIQUE_AT] = now
        return "250 2.0.0 OK"


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when the driver dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the driver died before prctl took effect
        os._exit(1)


def serve(host: str, stats: Any, ready: Any, parent_pid: int) -> None:
    """Process entry point: bind host:0, send the port through `ready`, serve until killed."""
    # Ctrl-C in the terminal reaches this process too; the driver stops it with SIGTERM instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    from aiosmtpd.smtp import SMTP

    handler = _CountingHandler(stats)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory() -> SMTP:
        stats[CONNECTIONS] += 1
        # No tls_context: the sink offers no STARTTLS, so the benchmark measures plain SMTP.
        return SMTP(handler, hostname="sink.bench.example", enable_SMTPUTF8=True, loop=loop)

    try:
        server = loop.run_until_complete(loop.create_server(factory, host, 0, backlog=512))
    except BaseException as exc:
        ready.send(("error", repr(exc)))
        raise
    ready.send(("ok", server.sockets[0].getsockname()[1]))
    loop.run_forever()
