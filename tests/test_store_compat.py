"""Data stored by the version before the redesign is read and moved on by this one.

`tests/data/store_before_redesign.json` is every Redis key that version's own job store wrote
(ttsq 321b6db, `common/jobstore.py`) for three jobs: one queued (and not yet published), one
failed, one succeeded. Here they are restored into a real Redis, and this version reads them,
lists them, sweeps them and changes them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common.jobs.store import ClaimResult, JobStore
from common.schemas.jobs import JobStatus

DATA = json.loads((Path(__file__).parent / "data" / "store_before_redesign.json").read_text())


def _restore(store: JobStore, keys: dict[str, dict[str, Any]]) -> None:
    pipe = store.redis.pipeline()
    for key, value in keys.items():
        ((kind, content),) = value.items()
        if kind == "string":
            pipe.set(key, content)
        elif kind == "zset":
            pipe.zadd(key, {member: score for member, score in content})
        elif kind == "hash":
            pipe.hset(key, mapping=content)
        elif kind == "list":
            pipe.rpush(key, *content)
        else:
            pytest.fail(f"{key}: a {kind} the fixture cannot restore")
    pipe.execute()


@pytest.fixture
def old(store: JobStore) -> JobStore:
    _restore(store, DATA["keys"])
    return store


def test_every_job_the_old_version_stored_reads_as_it_was(old: JobStore) -> None:
    owner = DATA["owner"]
    queued = old.get_owned(DATA["queued"], owner)
    assert queued.status == JobStatus.queued
    assert queued.request.target_duration_s == 2.4 and queued.request.format == "mp3"
    assert queued.request.emotion is not None and queued.request.priority == "batch"
    failed = old.get_owned(DATA["failed"], owner)
    assert failed.status == JobStatus.failed and failed.error is not None
    assert failed.error.code == "engine_rejected_input"
    assert failed.error.retryable is None  # the old version did not say; read as retryable
    done = old.get_owned(DATA["succeeded"], owner)
    assert done.status == JobStatus.succeeded and done.audio is not None
    assert done.audio.duration_s == 1.5
    page, _ = old.list_owned(owner, status=None, after=None, limit=10)
    assert {job.id for job in page} == {DATA["queued"], DATA["failed"], DATA["succeeded"]}
    assert old.queue_position(DATA["queued"]) == 0 and old.queue_depth() == 1


def test_the_old_versions_unpublished_job_is_swept_claimed_and_ended_by_this_one(
    old: JobStore,
) -> None:
    written = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert old.outbox_due(written + timedelta(minutes=5)) == [DATA["queued"]]
    claim = old.claim(DATA["queued"], "synth-new", is_alive=lambda _: False, max_attempts=3)
    assert claim.result == ClaimResult.run
    assert old.fail(DATA["queued"], "engine_rejected_input", "no", retryable=False)
    ended = old.get(DATA["queued"])
    assert ended is not None and ended.status == JobStatus.failed
    assert ended.error is not None and ended.error.retryable is False
    assert old.queue_depth() == 0
