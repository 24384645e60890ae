"""mail.thread_group_commit: threads that hand items over while a write is under way share the next write, and
none returns before the write that holds its items has ended."""

from __future__ import annotations

import threading

import pytest

from mail.thread_group_commit import ThreadGroupCommit


def _wait_until(condition) -> None:  # type: ignore[no-untyped-def]
    done = threading.Event()
    while not condition():
        done.wait(0.01)


def test_items_handed_over_during_a_write_share_the_next_write():
    writes: list[list[str]] = []
    first_started, release_first = threading.Event(), threading.Event()
    returned: list[str] = []

    def write(items: list[str]) -> None:
        if not writes:
            first_started.set()
            release_first.wait()
        writes.append(sorted(items))

    group = ThreadGroupCommit(write)

    def submit(item: str) -> None:
        group.submit([item])
        assert any(item in w for w in writes)  # written before submit returns
        returned.append(item)

    leader = threading.Thread(target=submit, args=("a",))
    leader.start()
    first_started.wait()
    others = [threading.Thread(target=submit, args=(x,)) for x in ("b", "c", "d")]
    for t in others:
        t.start()
    _wait_until(lambda: len(group._queue) == 3)
    assert returned == []  # nobody returns while the write holding its items has not ended
    release_first.set()
    for t in [leader, *others]:
        t.join()
    assert writes == [["a"], ["b", "c", "d"]]
    assert sorted(returned) == ["a", "b", "c", "d"]


def test_a_failed_group_is_written_caller_by_caller_and_only_the_bad_one_fails():
    writes: list[list[str]] = []
    first_started, release_first = threading.Event(), threading.Event()
    errors: dict[str, BaseException] = {}

    def write(items: list[str]) -> None:
        if not writes:
            writes.append(items)
            first_started.set()
            release_first.wait()
            return
        if "bad" in items:
            raise ValueError("bad item")
        writes.append(sorted(items))

    group = ThreadGroupCommit(write)

    def submit(item: str) -> None:
        try:
            group.submit([item])
        except ValueError as exc:
            errors[item] = exc

    leader = threading.Thread(target=submit, args=("first",))
    leader.start()
    first_started.wait()
    others = [threading.Thread(target=submit, args=(x,)) for x in ("good", "bad")]
    for t in others:
        t.start()
    _wait_until(lambda: len(group._queue) == 2)
    release_first.set()
    for t in [leader, *others]:
        t.join()
    assert writes == [["first"], ["good"]]
    assert list(errors) == ["bad"]


def test_a_lone_failed_write_raises_to_its_caller_once():
    calls = []

    def write(items: list[int]) -> None:
        calls.append(items)
        raise RuntimeError("database unavailable")

    with pytest.raises(RuntimeError, match="unavailable"):
        ThreadGroupCommit(write).submit([1])
    assert calls == [[1]]
