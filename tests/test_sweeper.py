"""The sweeper against a real Redis: every kind of stuck job is found, and sent again once.

The clock, the workers' heartbeats and the broker's messages are injected, so each test sets
up exactly the stuck state the hardening issue reproduced and checks what the sweeper does.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common import keys
from common.errors import StorageUnavailable
from common.jobs.store import JobStore
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobStatus, Stage
from common.worker.delivery import UploadPolicy, run_upload
from gpu_worker.synthesis import run_synthesis
from io_worker.sweeper import Sweeper
from tests.support.servers import wait_for
from tests.test_synthesis_unit import FakeEngine, FakeStorage

GRACE = 30.0
LEASE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    store: JobStore
    clock: Clock
    storage: FakeStorage = field(default_factory=FakeStorage)
    #: instance -> the jobs it holds, for the live workers
    beats: dict[str, set[str]] = field(default_factory=dict)
    #: job ids with a message in the broker
    messages: set[str] = field(default_factory=set)
    sent: list[tuple[str, str]] = field(default_factory=list)

    def sweeper(self) -> Sweeper:
        instance = f"io-{uuid.uuid4().hex[:6]}"
        self.beats[instance] = set()  # a live I/O worker runs each sweeper
        return Sweeper(
            store=self.store,
            storage=self.storage,
            publish_synthesis=lambda j: self.sent.append(("synth", j)),
            publish_upload=lambda j: self.sent.append(("upload", j)),
            grace_s=GRACE,
            upload_lease_s=LEASE,
            heartbeats=lambda: {w: set(jobs) for w, jobs in self.beats.items()},
            messages=lambda: set(self.messages),
            instance=instance,
        )

    def submit(self) -> str:
        job = self.store.create("o", JobRequest(text="hello"))
        self.store.mark_published(job.id)
        self.messages.add(job.id)
        return job.id

    def claim(self, job_id: str, worker: str) -> None:
        self.messages.discard(job_id)
        self.beats.setdefault(worker, set()).add(job_id)
        self.store.claim(job_id, worker, is_alive=lambda w: w in self.beats, max_attempts=3)


@pytest.fixture
def world(store: JobStore) -> Iterator[World]:
    clock = Clock()
    yield World(JobStore(store.redis, job_ttl_s=3600, clock=clock, publish_grace_s=GRACE), clock)


def test_a_job_stored_but_never_published_is_sent_after_the_grace_once(world: World) -> None:
    job = world.store.create("o", JobRequest(text="the API died before publishing"))
    world.sweeper().run()
    assert world.sent == []  # the API may still publish it
    world.clock.advance(GRACE + 1)
    world.sweeper().run()
    world.sweeper().run()
    assert world.sent == [("synth", job.id)]


def test_a_job_whose_task_died_after_the_claim_is_requeued_once(world: World) -> None:
    job_id = world.submit()
    world.claim(job_id, "w1")
    world.beats["w1"] = set()  # the task raised (a Redis error after claim); the worker lives on
    world.sweeper().run()
    assert world.sent == []  # within the grace: it may have just claimed
    world.clock.advance(GRACE + 1)
    world.sweeper().run()
    world.sweeper().run()
    assert world.sent == [("synth", job_id)]
    job = world.store.get(job_id)
    assert job and job.status == JobStatus.queued and job.worker is None
    assert world.store.redis.hget(keys.SWEEP_COUNTS, "rescued") == b"1"


def test_a_long_job_on_a_worker_that_is_on_it_is_left_alone(world: World) -> None:
    job_id = world.submit()
    world.claim(job_id, "w1")
    world.clock.advance(GRACE * 10)
    world.sweeper().run()
    assert world.sent == []
    assert world.store.get(job_id).status == JobStatus.running  # type: ignore[union-attr]


def test_a_job_claimed_and_waiting_for_the_engine_is_left_alone(world: World) -> None:
    on_engine, next_up = world.submit(), world.submit()
    world.claim(on_engine, "w1")
    world.claim(next_up, "w1")  # prepared while the engine runs the first (`pipeline.py`)
    world.clock.advance(GRACE * 10)
    world.sweeper().run()
    assert world.sent == []
    assert world.store.get(next_up).status == JobStatus.running  # type: ignore[union-attr]


def test_a_dead_workers_job_goes_back_at_once(world: World) -> None:
    job_id = world.submit()
    world.claim(job_id, "w1")
    del world.beats["w1"]
    world.sweeper().run()
    assert world.sent == [("synth", job_id)]


def test_a_queued_job_with_no_message_is_sent_again_after_two_looks(world: World) -> None:
    lost = world.submit()
    fine = world.submit()
    world.messages.discard(lost)  # Redis was killed and forgot the message
    sweeper = world.sweeper()
    sweeper.run()
    assert world.sent == []  # one look could be a message in transit
    world.clock.advance(GRACE + 1)
    sweeper._last_orphan_check = 0.0
    sweeper.run()
    assert world.sent == [("synth", lost)]
    world.messages.add(lost)
    world.clock.advance(GRACE + 1)
    sweeper._last_orphan_check = 0.0
    sweeper.run()
    assert world.sent == [("synth", lost)] and fine not in dict(world.sent).values()


def test_a_message_that_reappears_clears_the_suspicion(world: World) -> None:
    job_id = world.submit()
    world.messages.discard(job_id)
    sweeper = world.sweeper()
    sweeper.run()
    world.messages.add(job_id)
    world.clock.advance(GRACE + 1)
    sweeper._last_orphan_check = 0.0
    sweeper.run()
    world.messages.discard(job_id)
    sweeper._last_orphan_check = 0.0
    sweeper.run()  # seen missing again, but only once since it reappeared
    assert world.sent == []


def test_two_sweepers_at_once_send_a_stuck_job_once(world: World) -> None:
    jobs = [world.store.create("o", JobRequest(text=f"job {i}")).id for i in range(20)]
    world.clock.advance(GRACE + 1)
    barrier = threading.Barrier(4)

    def sweep() -> None:
        barrier.wait()
        world.sweeper().run()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j for _, j in world.sent) == sorted(jobs)


def test_a_transient_engine_error_retries_through_the_outbox_when_due(world: World) -> None:
    job_id = world.submit()
    world.claim(job_id, "w1")
    world.store.requeue(job_id, only_from="w1", delay_s=8)
    world.sweeper().run()
    assert world.sent == []
    world.clock.advance(9)
    world.sweeper().run()
    assert world.sent == [("synth", job_id)]


def uploading(world: World) -> str:
    job_id = world.submit()
    world.messages.discard(job_id)
    outcome = run_synthesis(
        job_id,
        store=world.store,
        engine=FakeEngine(),
        instance="w1",
        is_alive=lambda _: True,
        max_attempts=3,
        upload_lease_s=GRACE,
    )
    assert outcome.next == "upload"
    return job_id


def test_an_upload_that_was_never_sent_is_sent_once_after_its_lease(world: World) -> None:
    job_id = uploading(world)
    world.sweeper().run()
    assert world.sent == []
    world.clock.advance(GRACE + 1)
    world.sweeper().run()
    world.sweeper().run()
    assert world.sent == [("upload", job_id)]


def test_an_upload_waiting_out_its_backoff_is_not_sent_twice(world: World) -> None:
    job_id = uploading(world)
    storage = FakeStorage(failures=1)
    outcome = run_upload(
        job_id,
        store=world.store,
        storage=storage,
        attempt=6,
        policy=UploadPolicy(max_attempts=8, backoff_s=1, backoff_max_s=60, lease_s=LEASE),
    )
    assert outcome.retry_in == 60
    world.clock.advance(60 + 35)  # the 80 s stall threshold of old would resend here
    world.sweeper().run()
    assert world.sent == []
    world.clock.advance(LEASE)
    world.sweeper().run()
    assert world.sent == [("upload", job_id)]


def test_audio_of_a_job_canceled_mid_upload_is_deleted_even_if_storage_fails_once(
    world: World,
) -> None:
    job_id = uploading(world)

    class CancelOnPut(FakeStorage):
        delete_failures = 1

        def put(self, key: str, data: bytes, content_type: str) -> None:
            super().put(key, data, content_type)
            world.store.cancel(job_id, "o")

        def delete(self, key: str) -> None:
            if self.delete_failures:
                self.delete_failures -= 1
                raise StorageUnavailable("storage delete failed: 503")
            super().delete(key)

    storage = CancelOnPut()
    run_upload(
        job_id,
        store=world.store,
        storage=storage,
        attempt=0,
        policy=UploadPolicy(max_attempts=3, backoff_s=1, backoff_max_s=1),
    )
    assert list(storage.objects) == [f"audio/{job_id}.wav"]  # the delete failed
    world.storage = storage
    world.sweeper().run()
    assert storage.objects == {}
    assert world.store.get(job_id).status == JobStatus.canceled  # type: ignore[union-attr]


def test_claim_and_cancel_racing_leave_one_consistent_end(world: World) -> None:
    for _ in range(30):
        job_id = world.submit()
        barrier = threading.Barrier(2)

        def claim(job_id: str = job_id) -> None:
            barrier.wait()
            world.store.claim(job_id, "w1", is_alive=lambda _: True, max_attempts=3)

        def cancel(job_id: str = job_id) -> None:
            barrier.wait()
            world.store.cancel(job_id, "o")

        threads = [threading.Thread(target=claim), threading.Thread(target=cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        job = world.store.get(job_id)
        assert job and job.status == JobStatus.canceled and job.stage is None
        redis = world.store.redis
        assert redis.zscore(keys.QUEUED, job_id) is None
        assert redis.zscore(keys.RUNNING, job_id) is None
        assert not world.store.mark_synthesized(
            job_id, "w1", b"RIFF", synth_s=1, duration_s=1, warnings=[]
        )
    assert world.store.get(job_id).stage != Stage.uploading  # type: ignore[union-attr]


def test_a_slow_sweep_never_lets_the_io_workers_heartbeat_expire(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.broker import make_celery
    from common.settings import Settings
    from common.worker.registry import is_alive
    from io_worker import runtime
    from io_worker.sweeper import Sweeper

    url = store.redis.connection_pool.connection_kwargs
    settings = Settings(
        redis_url=f"redis://{url['host']}:{url['port']}/9",
        data_dir=tmp_path,
        heartbeat_interval_s=0.2,
        heartbeat_ttl_s=1.5,
        sweep_interval_s=0.05,  # below the heartbeat interval: allowed
    )
    sweeping = threading.Event()

    def slow_sweep(self: Sweeper) -> object:
        sweeping.set()
        time.sleep(5)  # S3 deletes at their 5 + 30 s timeouts, in miniature
        return None

    monkeypatch.setattr(Sweeper, "sweep", slow_sweep)
    rt = runtime.start(settings, make_celery(settings))
    try:
        assert sweeping.wait(5)
        # The sweeper's thread may reach its sweep before the heartbeat's first write lands.
        wait_for(lambda: is_alive(store.redis, rt.instance), 2, "the first heartbeat")
        # A duration, not a wait: alive at every look for 3 s of one sweep (twice the TTL).
        watched_until = time.monotonic() + 3
        while time.monotonic() < watched_until:
            assert is_alive(store.redis, rt.instance)
            time.sleep(0.1)
    finally:
        runtime.stop()


def test_a_sweep_lock_left_by_a_dead_io_worker_is_taken_over_at_once(world: World) -> None:
    job_id = world.store.create("o", JobRequest(text="left behind")).id
    world.clock.advance(GRACE + 1)
    world.store.redis.set(keys.SWEEP_LOCK, "io@gone:1:abcdef", ex=120)  # killed mid-sweep
    assert world.sweeper().run() is not None
    assert world.sent == [("synth", job_id)]


def test_a_sweep_lock_held_by_a_live_io_worker_is_respected(world: World) -> None:
    world.beats["io@alive:1:abcdef"] = set()
    world.store.redis.set(keys.SWEEP_LOCK, "io@alive:1:abcdef", ex=120)
    assert world.sweeper().run() is None


def test_a_message_delivered_long_ago_and_never_acked_no_longer_counts(store: JobStore) -> None:
    from common.broker import broker_job_ids, make_celery, task_message
    from common.settings import Settings

    app = make_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    client = store.redis
    for job_id, delivered_s_ago in (("a" * 32, 120.0), ("b" * 32, 1.0)):
        _, raw = task_message(app, keys.TASK_SYNTHESIZE, keys.SYNTH_QUEUE, job_id)
        tag = f"tag-{job_id[0]}"
        client.hset(keys.BROKER_UNACKED, tag, json.dumps([json.loads(raw), "", keys.SYNTH_QUEUE]))
        client.zadd(keys.BROKER_UNACKED_INDEX, {tag: time.time() - delivered_s_ago})
    try:
        assert broker_job_ids(client, keys.SYNTH_QUEUE) == {"a" * 32, "b" * 32}
        assert broker_job_ids(client, keys.SYNTH_QUEUE, delivered_within_s=30) == {"b" * 32}
    finally:
        client.delete(keys.BROKER_UNACKED, keys.BROKER_UNACKED_INDEX)
