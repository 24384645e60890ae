"""A group commit for threads: each caller hands its items over and returns once they are written, while the
items of every thread that arrived meanwhile go into the same write.

No writer thread of its own: the first caller that finds no write under way writes what is queued (its own items
and whatever others handed over), in its own thread (and so with its own database connection), then wakes the
others. A caller never returns before the write that holds its items has ended, so what it does next comes after
that write, exactly as if it had written alone; only the number of writes goes down, from one per caller to one
per round. The SMTP server's asyncio group commit (sending/smtp/group_commit.py) is the same idea on an event
loop.

When a write of several callers' items fails, each caller writes its own alone (one bad item fails only its
caller); a caller whose own write fails gets that exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("items", "done", "failed", "error")

    def __init__(self, items: Sequence[T]) -> None:
        self.items = items
        self.done = False
        self.failed = False  # its group's write failed: write it alone
        self.error: BaseException | None = None  # its own write (alone) failed with this


class ThreadGroupCommit(Generic[T]):
    def __init__(self, write: Callable[[list[T]], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._queue: list[_Entry[T]] = []
        self._writing = False

    def submit(self, items: Sequence[T]) -> None:
        """Return once `items` are written (with other threads' items, or alone); raise what their write raised."""
        if not items:
            return
        entry = _Entry(items)
        with self._cond:
            self._queue.append(entry)
            while not entry.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                group, self._queue = self._queue, []
                self._cond.release()
                try:
                    self._write_group(group)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    for e in group:
                        e.done = True
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        if entry.failed:
            self._write(list(items))  # alone: an error of its own reaches its own caller

    def _write_group(self, group: list[_Entry[T]]) -> None:
        try:
            self._write([item for e in group for item in e.items])
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
                return
            for e in group:
                e.failed = True
