"""The synthesis process is replaced after N jobs or above a GPU memory mark, and the job in
hand is never lost or run twice."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from common import keys
from common.schemas.jobs import JobRecord
from tests.support.engines import calls
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import DB, Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "overrides",
    [
        {"TTS_MAX_JOBS_PER_CHILD": "1"},
        {"TTS_RECYCLE_GPU_MEMORY_MB": "1000", "TTS_TEST_FAKE_GPU_MB": "1500"},
    ],
    ids=["after-n-jobs", "above-gpu-memory-mark"],
)
def test_recycled_process_finishes_each_job_exactly_once(
    tmp_path: Path, redis_server: RedisServer, s3_server: S3Server, overrides: dict[str, str]
) -> None:
    stack = Stack(tmp_path, redis_server, s3_server, db=DB["worker_lifecycle"], **overrides).start()
    store = redis.Redis.from_url(stack.env["TTS_REDIS_URL"])
    try:
        runners, probes = set(), []
        for i in range(3):
            probes.append(uuid.uuid4().hex)
            job = stack.submit(text=f"line {i}", metadata={"probe": probes[-1]})
            done = stack.wait_end(job["id"])
            assert done["status"] == "succeeded" and done["attempts"] == 1
            runners.add(JobRecord.model_validate_json(store.get(keys.job(job["id"]))).worker)
        assert len(runners) == 3  # a fresh process (with a fresh engine) for every job
        assert [calls(stack.ledger, p) for p in probes] == [1, 1, 1]
        log = (tmp_path / "logs" / "worker.log").read_text()
        assert "WorkerLostError" not in log
    finally:
        stack.stop()
