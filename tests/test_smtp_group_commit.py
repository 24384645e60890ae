"""The SMTP server's group commit: many sessions' messages in one transaction, a 250 only after the commit."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, OperationalError, connection

from sending.models import Message, Recipient
from sending.smtp.group_commit import GroupCommit
from tests.test_smtp_submission import MESSAGE, credential, logged_in, smtp_server  # noqa: F401 - fixtures


def run(coro):
    """asyncio.run in a thread of its own: an earlier test (Playwright's sync API) may leave an event loop
    running in the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


SESSIONS = 8


class BlockingStore:
    """A store whose first call waits until released, so the test controls when a commit is in flight."""

    def __init__(self, fail: type[Exception] | None = None, poison: object = None) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.groups: list[list[object]] = []
        self.committed: list[object] = []
        self.fail, self.poison = fail, poison

    def __call__(self, items: list[object]) -> None:
        self.groups.append(list(items))
        self.entered.set()
        self.release.wait(10)
        if self.fail is not None and (self.poison is None or self.poison in items):
            raise self.fail("the database said no")
        self.committed.extend(items)


async def _submit_all(committer: GroupCommit, items: list[object]) -> list[object]:
    """Submit items as concurrent sessions would; each result is None (committed) or the exception."""

    async def one(item: object) -> object:
        try:
            await committer.submit(item)
        except Exception as exc:  # noqa: BLE001 - the result under test
            return exc
        return None

    return await asyncio.gather(*(one(item) for item in items))


def test_messages_arriving_during_a_commit_share_the_next_one_and_wait_for_it():
    store = BlockingStore()
    committer = GroupCommit(store, max_group=3)
    answered: dict[object, list[object]] = {}

    async def scenario() -> None:
        async def one(item: str) -> None:
            await committer.submit(item)
            answered[item] = list(store.committed)  # what was committed when this session got its answer

        first = asyncio.create_task(one("a"))
        await asyncio.to_thread(store.entered.wait, 10)  # "a" is being committed
        later = [asyncio.create_task(one(x)) for x in "bcdef"]
        await asyncio.sleep(0.05)
        assert answered == {}, "no answer while its commit has not returned"
        store.release.set()
        await asyncio.gather(first, *later)

    run(scenario())
    assert store.groups == [["a"], ["b", "c", "d"], ["e", "f"]]
    for item, committed in answered.items():
        assert item in committed


def test_with_two_commits_in_flight_the_rest_waits_for_a_free_one():
    store = BlockingStore()
    lock, inside, most = threading.Lock(), [0], [0]

    def counting(items: list[object]) -> None:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            store(items)
        finally:
            with lock:
                inside[0] -= 1

    async def scenario() -> list[object]:
        committer = GroupCommit(counting, concurrency=2)
        first = asyncio.ensure_future(_submit_all(committer, ["a"]))
        await asyncio.to_thread(store.entered.wait, 10)
        store.entered.clear()
        second = asyncio.ensure_future(_submit_all(committer, ["b"]))
        await asyncio.to_thread(store.entered.wait, 10)
        rest = asyncio.ensure_future(_submit_all(committer, ["c", "d", "e"]))
        await asyncio.sleep(0.05)
        assert len(store.groups) == 2, "a third store must not start while two are running"
        store.release.set()
        return [*(await first), *(await second), *(await rest)]

    assert run(scenario()) == [None] * 5
    assert most[0] == 2
    assert store.groups == [["a"], ["b"], ["c", "d", "e"]]


def test_a_failed_commit_fails_every_message_of_its_group_and_the_next_group_commits():
    store = BlockingStore(fail=OperationalError)

    async def scenario() -> tuple[list[object], list[object]]:
        committer = GroupCommit(store)
        failing = asyncio.ensure_future(_submit_all(committer, ["a", "b", "c"]))
        await asyncio.to_thread(store.entered.wait, 10)
        store.release.set()
        failed = await failing
        store.fail = None
        return failed, await _submit_all(committer, ["d", "e"])

    failed, after = run(scenario())
    assert all(isinstance(result, OperationalError) for result in failed)
    assert after == [None, None]
    assert store.committed == ["d", "e"]


def test_one_message_breaking_a_constraint_fails_alone():
    store = BlockingStore(fail=IntegrityError, poison="bad")
    store.release.set()

    async def scenario() -> list[object]:
        committer = GroupCommit(store)
        first = asyncio.ensure_future(committer.submit("a"))
        await asyncio.sleep(0)  # "a" is in flight; the others form the next group
        results = await _submit_all(committer, ["b", "bad", "c"])
        await first
        return results

    results = run(scenario())
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IntegrityError)
    assert sorted(store.committed) == ["a", "b", "c"]  # type: ignore[type-var]


pytestmark_db = pytest.mark.django_db(transaction=True)


def _send(server, login, n: int) -> tuple[int, bytes, bool]:  # type: ignore[no-untyped-def]
    """One session, one message; (code, reply, whether the message was in the database when the reply came)."""
    client = logged_in(server, login)
    try:
        client.mail("app@acme.example")
        client.rcpt(f"user{n}@dest.example")
        code, text = client.data(MESSAGE.encode())
    except smtplib.SMTPException as exc:
        return -1, str(exc).encode(), False
    finally:
        client.close()
    stored = False
    if code == 250:
        message_id = text.decode().rsplit(" ", 1)[-1]
        # Read in this thread, through its own connection: committed means visible to everyone else.
        stored = Message.objects.filter(id=message_id).exists()
        connection.close()
    return code, text, stored


def _concurrently(server, login) -> list[tuple[int, bytes, bool]]:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(SESSIONS) as pool:
        return list(pool.map(lambda n: _send(server, login, n), range(SESSIONS)))


@pytestmark_db
def test_concurrent_sessions_each_get_250_only_once_their_message_is_committed(smtp_server, credential):  # noqa: F811
    results = _concurrently(smtp_server, credential)
    assert [(code, stored) for code, _, stored in results] == [(250, True)] * SESSIONS
    assert Message.objects.count() == Recipient.objects.count() == SESSIONS


@pytestmark_db
def test_a_database_failure_answers_451_to_every_session_waiting_on_it(smtp_server, credential):  # noqa: F811
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE sending_recipient RENAME TO sending_recipient_away")
    try:
        results = _concurrently(smtp_server, credential)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE sending_recipient_away RENAME TO sending_recipient")
    assert [(code, text[:5]) for code, text, _ in results] == [(451, b"4.3.0")] * SESSIONS
    assert not Message.objects.exists()
    assert [code for code, _, _ in _concurrently(smtp_server, credential)] == [250] * SESSIONS  # and recovers
    assert Message.objects.count() == SESSIONS


def test_an_item_the_store_turns_away_fails_alone_and_the_others_are_committed():
    """A send limit or a pause refuses one session's message: the group's other messages still get their 250."""
    committed: list[object] = []
    refusal = RuntimeError("451 4.7.1 over the limit")

    def store(items: list[object]) -> dict[int, BaseException]:
        turned_away = {n: refusal for n, item in enumerate(items) if item == "limited"}
        committed.extend(item for n, item in enumerate(items) if n not in turned_away)
        return turned_away

    committer = GroupCommit(store)
    results = run(_submit_all(committer, ["a", "limited", "b"]))
    assert results == [None, refusal, None]
    assert committed == ["a", "b"]
