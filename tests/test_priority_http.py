"""Priorities through the real stack: an interactive job submitted behind a batch's queued
items is the next to start, and `queue_position` says so.

50 items, not the 500 of the issue: each item runs (then is canceled) through a real worker,
and 500 would add minutes to CI without testing anything more: the order is kombu's list
order, which does not depend on the count."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from tests.support.servers import RedisServer, S3Server
from tests.support.stack import DB, Stack

ITEMS = 50


@pytest.fixture(scope="module")
def prio(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("prio"), redis_server, s3_server, db=DB["priority"])
    stack.start()
    yield stack
    stack.stop()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_an_interactive_job_starts_before_50_queued_batch_jobs(prio: Stack) -> None:
    warm = prio.submit(text="a first line, so there is a synthesis time to estimate from")
    assert prio.wait_end(warm["id"])["status"] == "succeeded"
    gate = prio.ledger / "gate-overtake"
    blocker = prio.submit(text="holding the worker", metadata={"script": f"hold:{gate.name}"})
    prio.wait_status(blocker["id"], "running")
    # The worker claims one job ahead of the engine (`gpu_worker/pipeline.py`): this one, so
    # the next it takes from the queue is chosen after the batch and the urgent job arrive.
    prio.wait_status(prio.submit(text="next up")["id"], "running")
    r = httpx.post(
        f"{prio.url}/v1/batches",
        json={"items": [{"ref": f"s{i}", "text": f"batch line {i}"} for i in range(ITEMS)]},
        headers=prio.headers(),
        timeout=30,
    )
    assert r.status_code == 202, r.text
    batch = r.json()
    items = [item["job_id"] for item in batch["items"]]
    urgent = prio.submit(text="an urgent line")
    assert urgent["priority"] == "interactive" and urgent["queue_position"] == 0
    first, last = prio.get(items[0]), prio.get(items[-1])
    assert first["priority"] == "batch"
    assert (first["queue_position"], last["queue_position"]) == (1, ITEMS)
    assert urgent["eta_s"] is not None and last["eta_s"] > urgent["eta_s"]

    gate.touch()  # the worker is free: the next job it takes is the urgent one
    done = prio.wait_end(urgent["id"])
    assert done["status"] == "succeeded"
    cancel = httpx.post(
        f"{prio.url}/v1/batches/{batch['id']}/cancel", headers=prio.headers(), timeout=30
    )
    assert cancel.status_code == 200
    started = [
        at(job["started_at"])
        for job in (prio.wait_end(job_id) for job_id in items)
        if job["started_at"] is not None
    ]
    assert all(at(done["started_at"]) <= s for s in started)
