"""What every Postwerk SMTP handler shares: database calls off the event loop, the EHLO extensions, the
temporary-failure reply, and the protocol settings common to every listener."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiosmtpd.smtp import Envelope, Session
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.db import close_old_connections, connection

from sending.reputation import overload
from sending.smtp.protocol import PostwerkSMTP

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, nothing was accepted; try again later"


def run_db(fn, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
    """Run a database call in a worker thread, with a fresh connection if the old one failed."""

    def call():  # type: ignore[no-untyped-def]
        db_ready()
        return fn(*args, **kwargs)

    return asyncio.to_thread(call)


async def run_maybe_db(fn, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
    """A read-only check that usually needs no query (its lookups are memoised): run it on the event loop, and
    only when it does reach for the database, again from the start in a worker thread (run_db).

    Django refuses any query on the event loop with SynchronousOnlyOperation before it is sent, so nothing is
    half done; `fn` must have no side effects but its caches. The thread hop this saves (a future, a wake-up of
    the loop, two GIL hand-overs) was a tenth of the SMTP server's time per message."""
    try:
        return fn(*args, **kwargs)
    except SynchronousOnlyOperation:
        return await run_db(fn, *args, **kwargs)


def db_ready() -> None:
    """Before a database call in a long-lived server thread: replace this thread's connection if its last use
    failed (the database restarted, say).

    Not close_old_connections() on every call: with CONN_HEALTH_CHECKS that costs a `SELECT 1` round trip before
    each message's queries. A connection that broke unnoticed fails one call (451, try again later), which marks
    it, and the next call here replaces it."""
    if connection.errors_occurred:
        close_old_connections()


class BaseHandler:
    async def handle_EHLO(
        self, server: PostwerkSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd handles pipelined commands already; say so, and that every reply has an enhanced status.
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]


def protocol(handler: object, *, data_size_limit: int, per_ip: Counter[str], **kwargs: Any) -> PostwerkSMTP:
    return PostwerkSMTP(
        handler,
        hostname=settings.POSTWERK_HOSTNAME,
        ident="Postwerk ESMTP",
        data_size_limit=data_size_limit,
        enable_SMTPUTF8=True,
        decode_data=False,
        require_starttls=False,
        timeout=settings.POSTWERK_SMTP_IDLE_TIMEOUT,
        max_per_ip=settings.POSTWERK_SMTP_MAX_CONNECTIONS_PER_IP,
        per_ip=per_ip,
        **kwargs,
    )


async def overloaded_async() -> bool:
    """overload.overloaded() from the event loop: the cached answer at once, a fresh one from a worker thread."""
    if settings.POSTWERK_OVERLOAD_QUEUE_DEPTH <= 0:
        return False
    cached = overload.fresh_answer()
    return cached if cached is not None else await run_db(overload.overloaded)
