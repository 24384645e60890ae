"""Group commit: the messages that arrive while one transaction is being committed share the next one.

Each SMTP session waits for its own `250` after DATA, so under load many sessions wait at once. Storing each
message in its own transaction costs a connection check, a suppression query, the inserts, a commit and a
broker publish per message; storing everything that queued up during the previous commit in one transaction
costs those once per group. Nothing waits on a timer: an idle server commits a lone message at once, and groups
grow only as fast as the database is slow.

The contract is unchanged: a message's future resolves only after the transaction holding it has committed
(so a `250` still means stored), and a failed commit fails every message that was in it (each gets `451`). `store`
may also turn single items away before its transaction (a send limit, say): it returns their exceptions by index,
and only those items' futures get them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

from django.db import DataError, IntegrityError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors one message's rows can cause on their own. A group failing with one of these is retried message by
# message, so one bad message cannot take the others down with it. Anything else (the database is gone, a
# timeout) would fail each message alone just the same, so the whole group gets it at once.
_PER_MESSAGE_ERRORS = (IntegrityError, DataError)


class GroupCommit(Generic[T]):
    """Feeds items to `store` (a blocking function, run in a thread) in groups of at most `max_group`.

    At most `concurrency` stores run at once, each in its own thread with its own database connection: with
    two, one group is being built and sent while the other waits for its commit. Use it from a single event
    loop.
    """

    def __init__(
        self,
        store: Callable[[Sequence[T]], Mapping[int, BaseException] | None],
        *,
        max_group: int = 100,
        concurrency: int = 1,
    ) -> None:
        self._store = store
        self._max_group = max_group
        self._concurrency = max(1, concurrency)
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()  # held so the loop does not drop a running store

    async def submit(self, item: T) -> None:
        """Return once `item` is committed; raise what its commit raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._running < self._concurrency:
            self._running += 1
            runner = asyncio.create_task(self._run())
            self._tasks.add(runner)
            runner.add_done_callback(self._tasks.discard)
        # A session that goes away (client gone, server stopping) stops waiting; its item is still stored
        # with its group, as it would have been had the client stayed for the answer.
        await future

    async def _run(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[: self._max_group], self._pending[self._max_group :]
                await self._commit(group)
        finally:
            # No await between the empty check and this: a submit either finds this runner still counted
            # (and it takes the item) or not (and starts another).
            self._running -= 1

    async def _commit(self, group: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            turned_away = await asyncio.to_thread(self._store, [item for item, _ in group])
        except _PER_MESSAGE_ERRORS as exc:
            if len(group) == 1:
                _settle(group, exc)
                return
            log.warning("a group of %d messages failed (%s); storing them one by one", len(group), exc)
            for one in group:
                await self._commit([one])
        except Exception as exc:  # noqa: BLE001 - handed to every waiting session, which answers 451
            _settle(group, exc)
        else:
            _settle(group, None, turned_away or {})


def _settle(
    group: list[tuple[T, asyncio.Future[None]]],
    error: BaseException | None,
    turned_away: Mapping[int, BaseException] | None = None,
) -> None:
    for n, (_, future) in enumerate(group):
        if future.done():  # its session stopped waiting
            continue
        own = error if error is not None else (turned_away or {}).get(n)
        if own is None:
            future.set_result(None)
        else:
            future.set_exception(own)
