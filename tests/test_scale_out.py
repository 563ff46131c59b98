"""Scaling out: a second synthesis worker (another rented GPU) joins by pointing at the same
Redis and storage; the two share one queue, and each job runs exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.support.engines import calls
from tests.support.servers import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_two_workers_share_one_queue_and_run_each_job_once(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack().start()
    stack.add_worker()

    def synth_workers() -> list[dict[str, object]]:
        info = httpx.get(f"{stack.url}/v1/engine", headers=stack.headers(), timeout=5).json()
        return [w for w in info["workers"] if w["ready"]]

    wait_for(lambda: len(synth_workers()) == 2, 60, "two ready synthesis workers")
    before = {str(w["instance"]): int(str(w["jobs_done"])) for w in synth_workers()}
    probes = [uuid.uuid4().hex for _ in range(12)]
    jobs = [
        stack.submit(text=f"line {i}", metadata={"probe": p, "script": "sleep:0.5"})["id"]
        for i, p in enumerate(probes)
    ]
    for job_id in jobs:
        assert stack.wait_end(job_id, timeout=90)["status"] == "succeeded"
    assert all(calls(stack.ledger, p) == 1 for p in probes)
    after = {str(w["instance"]): int(str(w["jobs_done"])) for w in synth_workers()}
    shares = [after[name] - before.get(name, 0) for name in after]
    assert sum(shares) == len(jobs) and min(shares) > 0, shares  # both took part
