"""Finding the live workers reads their names from one set, never scans the keyspace: the
cost stays the same however many jobs are stored, and an expired worker drops out."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
import redis.asyncio as aioredis

from common import keys
from common.jobs.store import JobStore
from common.schemas.job_request import JobRequest
from common.schemas.workers import WorkerHeartbeat
from common.worker.registry import (
    alive_workers,
    alive_workers_async,
    remove_heartbeat,
    write_heartbeat,
)
from tests.support.servers import RedisServer


def beat(name: str) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        instance=name, kind="synth", hostname="h", pid=1, started_at=datetime.now(UTC)
    )


def test_live_workers_are_read_without_a_scan_and_expired_ones_drop_out(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()  # its own: commandstats count every db
    try:
        reads_the_set(redis.Redis.from_url(server.url))
    finally:
        server.stop()


def reads_the_set(client: redis.Redis) -> None:
    store = JobStore(client, job_ttl_s=60)
    for i in range(200):  # stored jobs: a SCAN for heartbeat keys would walk all of them
        store.create("o", JobRequest(text=f"job {i}"))
    write_heartbeat(client, beat("synth@a"), ttl_s=60)
    write_heartbeat(client, beat("synth@b"), ttl_s=0.2)
    write_heartbeat(client, beat("io@c"), ttl_s=60)
    remove_heartbeat(client, "io@c")
    before = client.info("commandstats")
    assert [b.instance for b in alive_workers(client)] == ["synth@a", "synth@b"]
    after = client.info("commandstats")
    used = {k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after}
    assert used.get("cmdstat_scan", 0) == 0 and used.get("cmdstat_keys", 0) == 0
    assert used.get("cmdstat_smembers") == 1 and used.get("cmdstat_mget") == 1
    # A duration: past synth@b's 0.2 s TTL (a wait would pass a TTL that were rounded up).
    time.sleep(0.3)
    assert [b.instance for b in alive_workers(client)] == ["synth@a"]
    assert client.smembers(keys.WORKERS) == {b"synth@a"}


def test_the_event_loop_reads_the_same_workers(store: JobStore) -> None:
    write_heartbeat(store.redis, beat("synth@a"), ttl_s=60)
    url = "redis://{host}:{port}/{db}".format(**store.redis.connection_pool.connection_kwargs)

    async def read() -> list[str]:
        client = aioredis.Redis.from_url(url)
        try:
            return [b.instance for b in await alive_workers_async(client)]
        finally:
            await client.aclose()

    assert asyncio.run(read()) == ["synth@a"]


def test_a_held_job_is_in_the_heartbeat_at_once_without_the_caller_waiting(
    store: JobStore,
) -> None:
    """`Heartbeat.hold` does not wait for Redis; its thread writes the job into the key at
    once, not at the next beat (a minute away here), and a release takes it out again."""
    from common.worker.heartbeat import Heartbeat
    from common.worker.registry import current_jobs
    from tests.support.servers import wait_for

    client = store.redis
    hb = Heartbeat(client, beat("synth@h"), interval_s=60, ttl_s=120)
    hb.start()
    try:
        wait_for(lambda: "synth@h" in current_jobs(client), 5, "the first beat")
        with hb._writing:  # a write in progress, as on a slow Redis: `hold` does not wait
            holding = threading.Thread(target=hb.hold, args=("job-1",))
            holding.start()
            holding.join(5)
            assert not holding.is_alive()
        wait_for(lambda: current_jobs(client)["synth@h"] == {"job-1"}, 5, "the hold written")
        hb.release("job-1")
        assert current_jobs(client)["synth@h"] == set()
    finally:
        hb.stop()
        hb.join(5)
    assert "synth@h" not in current_jobs(client)
