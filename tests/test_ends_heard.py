"""The synthesis process's ear for job ends (`gpu_worker/ends_heard.py`), against a real Redis:
an end announced by the job store is heard, and where it cannot be told (the subscription came
up after the claim, it was cut, the heartbeat lapsed) the answer is None, so the job is read.

A Redis server of this file's own: cutting the subscription kills every pub/sub connection on
the server, and on the session's Redis that cut other tests' stacks (their API's end watcher,
and their Celery worker's, which then took no more messages).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.jobs.store import JobStore, utcnow
from common.schemas.job_request import JobRequest
from common.schemas.workers import WorkerHeartbeat
from common.worker.heartbeat import Heartbeat
from gpu_worker.ends_heard import EndsHeard
from tests.support.servers import RedisServer, wait_for


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("ends-heard-redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def store(own_redis: RedisServer) -> JobStore:
    """A job store on this file's own Redis (shadows the session's `store`)."""
    return JobStore(redis.Redis.from_url(own_redis.url), job_ttl_s=60)


def heartbeat(store: JobStore, *, ttl_s: float = 5) -> Heartbeat:
    beat = WorkerHeartbeat(
        instance="synth@test", kind="synth", hostname="test", pid=1, started_at=utcnow()
    )
    hb = Heartbeat(store.redis, beat, interval_s=0.2, ttl_s=ttl_s)
    hb.start()
    return hb


@pytest.fixture
def ends(store: JobStore) -> Iterator[EndsHeard]:
    hb = heartbeat(store)
    heard = EndsHeard(store.redis, hb).start()
    wait_for(lambda: heard.ended("x", time.monotonic()) is not None, 10, "the subscription")
    yield heard
    heard.stop()
    hb.stop()


def job(store: JobStore) -> str:
    return store.create("o", JobRequest(text="waiting for the engine")).id


def test_a_job_canceled_while_it_waits_is_heard_ended_and_another_is_not(
    store: JobStore, ends: EndsHeard
) -> None:
    since = time.monotonic()
    canceled, waiting = job(store), job(store)
    store.cancel(canceled, "o")
    wait_for(lambda: ends.ended(canceled, since), 5, "the cancel to be heard")
    assert ends.ended(waiting, since) is False


def test_a_job_claimed_before_the_subscription_came_up_is_read(store: JobStore) -> None:
    since = time.monotonic()
    hb = heartbeat(store)
    heard = EndsHeard(store.redis, hb).start()
    try:
        wait_for(lambda: heard.ended("x", time.monotonic()) is not None, 10, "the subscription")
        assert heard.ended(job(store), since) is None
    finally:
        heard.stop()
        hb.stop()


def test_after_the_subscription_is_cut_only_jobs_claimed_since_it_came_back_are_told(
    store: JobStore, ends: EndsHeard
) -> None:
    before = time.monotonic()
    store.redis.client_kill_filter(_type="pubsub")

    def back() -> bool:
        return ends.ended("x", time.monotonic()) is False and ends.ended("x", before) is None

    wait_for(back, 10, "the subscription to come back, trusted only from then")
    since = time.monotonic()
    canceled = job(store)
    store.cancel(canceled, "o")
    wait_for(lambda: ends.ended(canceled, since), 5, "the cancel to be heard")
    assert ends.ended(canceled, before) is None


def test_once_the_heartbeat_may_have_lapsed_nothing_is_told(store: JobStore) -> None:
    hb = heartbeat(store, ttl_s=2)
    heard = EndsHeard(store.redis, hb).start()
    try:
        wait_for(lambda: heard.ended("x", time.monotonic()) is not None, 10, "the subscription")
        since = time.monotonic()
        waiting = job(store)
        assert heard.ended(waiting, since) is False
        hb.stop()  # no more writes: the key expires, and the sweeper may take the job over
        wait_for(lambda: heard.ended(waiting, since) is None, 5, "the answer to be withdrawn")
    finally:
        heard.stop()
