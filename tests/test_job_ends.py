"""Waiting for a job's end by subscription (`api/ends.py`), on a Redis server of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from api.ends import EndWatcher
from common.jobs.store import JobStore
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord
from tests.support.servers import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


async def woken(event: asyncio.Event, within: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), within)
    except TimeoutError:
        return False
    return True


async def subscribed(watcher: EndWatcher, within: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not watcher.subscribed:
        assert asyncio.get_running_loop().time() < deadline, f"not subscribed within {within}s"
        await asyncio.sleep(0.02)


def test_a_waiter_is_woken_when_its_job_ends_and_only_then(own_redis: RedisServer) -> None:
    store = JobStore(redis.Redis.from_url(own_redis.url), job_ttl_s=60)
    job, other = store.create("o", JobRequest(text="a")), store.create("o", JobRequest(text="b"))

    async def main() -> None:
        watcher = EndWatcher(own_redis.url)
        with watcher.watch(job.id) as ended:
            assert ended.is_set()  # read once first: an end just before cannot be missed
            await subscribed(watcher)
            ended.clear()
            await asyncio.to_thread(store.fail, other.id, "x", "another job", retryable=False)
            assert not await woken(ended, 0.5)
            await asyncio.to_thread(store.fail, job.id, "x", "this job", retryable=False)
            assert await woken(ended, 2)
            assert ended.record is not None  # the ended record came with the announcement
            assert JobRecord.model_validate_json(ended.record) == store.get(job.id)
        await watcher.close()

    asyncio.run(main())


def test_500_waiters_send_redis_no_commands_while_they_wait(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url)
    store = JobStore(client, job_ttl_s=60)
    jobs = [store.create("o", JobRequest(text="a")) for _ in range(500)]

    def commands() -> int:
        return int(client.info("stats")["total_commands_processed"])

    async def main() -> int:
        watcher = EndWatcher(own_redis.url)
        with contextlib.ExitStack() as watching:
            for job in jobs:
                watching.enter_context(watcher.watch(job.id))
            await subscribed(watcher)
            before = commands()
            await asyncio.sleep(2)  # a duration: the waiters must cost nothing for all of it
            sent = commands() - before - 1  # the INFO itself
        await watcher.close()
        return sent

    assert asyncio.run(main()) == 0


def test_waiters_read_again_while_redis_is_down_and_once_it_is_back(
    own_redis: RedisServer,
) -> None:
    store = JobStore(redis.Redis.from_url(own_redis.url), job_ttl_s=60)
    job = store.create("o", JobRequest(text="a"))

    async def main() -> None:
        watcher = EndWatcher(own_redis.url, fallback_s=0.2)
        with watcher.watch(job.id) as ended:
            await subscribed(watcher)
            ended.clear()
            await asyncio.to_thread(own_redis.kill)
            assert await woken(ended, 2)  # down: the waiter is told to read (and poll)
            ended.clear()
            await asyncio.to_thread(own_redis.start)
            await subscribed(watcher)  # back: subscribed again
            ended.clear()
            await asyncio.to_thread(
                store.fail, job.id, "x", "ended after the restart", retryable=False
            )
            assert await woken(ended, 2)
        await watcher.close()

    asyncio.run(main())


def test_a_mark_spares_the_first_read_unless_an_end_may_have_been_missed(
    own_redis: RedisServer,
) -> None:
    """A waiter with a `mark` taken before its record was read starts unset: every end since
    was heard. An end heard before it started watching still wakes it, and a mark from before
    the subscription went down is not trusted."""
    client = redis.Redis.from_url(own_redis.url)
    store = JobStore(client, job_ttl_s=60)
    ends_first, waits, later = (store.create("o", JobRequest(text=t)) for t in "abc")

    async def main() -> None:
        watcher = EndWatcher(own_redis.url, fallback_s=0.2)
        assert watcher.mark() is None  # not subscribed yet: no promise
        await subscribed(watcher)
        mark = watcher.mark()
        assert mark is not None
        await asyncio.to_thread(store.fail, ends_first.id, "x", "before the wait", retryable=False)
        deadline = asyncio.get_running_loop().time() + 5
        while ends_first.id not in watcher._heard:
            assert asyncio.get_running_loop().time() < deadline, "the end was never heard"
            await asyncio.sleep(0.01)
        with watcher.watch(ends_first.id, mark) as ended:
            assert ended.is_set()  # heard before the wait: it reads
        with watcher.watch(waits.id, mark) as ended:
            assert not ended.is_set()  # nothing to read: no end since the mark was its
            await asyncio.to_thread(store.fail, waits.id, "x", "during the wait", retryable=False)
            assert await woken(ended, 2)
            assert ended.record is not None
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        deadline = asyncio.get_running_loop().time() + 5
        while watcher.mark() is not None and watcher.mark().session == mark.session:
            assert asyncio.get_running_loop().time() < deadline, "never subscribed again"
            await asyncio.sleep(0.01)
        with watcher.watch(later.id, mark) as ended:
            assert ended.is_set()  # the subscription went down since: it reads
        await watcher.close()

    asyncio.run(main())
