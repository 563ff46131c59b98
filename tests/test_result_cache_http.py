"""The result cache through the real stack (API, synthesis and I/O workers, Redis, S3): an
identical job is answered at submission with a copy of the audio and no engine call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.engines import calls
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import DB, Stack


@pytest.fixture(scope="module")
def cached(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("cached"),
        redis_server,
        s3_server,
        db=DB["result_cache"],
        TTS_RESULT_CACHE="true",
    )
    stack.start()
    yield stack
    stack.stop()


def post(stack: Stack, owner: str = "alice", **body: Any) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/jobs", json=body, headers=stack.headers(owner), timeout=10)


def audio(job: dict[str, Any]) -> bytes:
    r = httpx.get(job["audio"]["url"], timeout=10)
    assert r.status_code == 200
    return r.content


def synthesised(stack: Stack, probe: str, owner: str = "alice", **body: Any) -> dict[str, Any]:
    r = post(stack, owner, metadata={"probe": probe}, **body)
    assert r.status_code == 202, r.text
    job = stack.wait_end(r.json()["id"], owner=owner)
    assert job["status"] == "succeeded" and job["cached"] is False
    assert calls(stack.ledger, probe) == 1
    return job


def test_an_identical_job_is_answered_at_once_with_a_copy_and_no_engine_call(
    cached: Stack,
) -> None:
    body = {"text": "Cached line one.", "format": "flac", "speed": 1.2}
    first = synthesised(cached, "hit-1", **body)
    r = post(cached, metadata={"probe": "hit-2"}, **body)
    assert r.status_code == 200, r.text  # ended in the answer to the POST itself
    second = r.json()
    assert second["status"] == "succeeded" and second["cached"] is True
    assert calls(cached.ledger, "hit-1") == 1 and calls(cached.ledger, "hit-2") == 0
    assert second["metrics"]["gpu_s"] == 0
    assert second["audio"]["url"] != first["audio"]["url"]  # its own object
    assert audio(second) == audio(first)
    assert second["audio"]["sha256"] == first["audio"]["sha256"]
    assert cached.get(second["id"])["cached"] is True


def test_cache_false_and_another_key_reach_the_engine(cached: Stack) -> None:
    body = {"text": "Cached line two."}
    synthesised(cached, "opt-1", **body)
    synthesised(cached, "opt-2", cache=False, **body)
    synthesised(cached, "opt-3", owner="bob", **body)  # entries are per API key


@pytest.mark.parametrize(
    "change",
    [
        {"text": "Cached line three, reworded."},
        {"format": "mp3"},
        {"sample_rate": 16000},
        {"speed": 1.3},
        {"loudness": -16.0},
        {"trim_silence": True},
    ],
)
def test_a_job_that_differs_in_any_option_is_synthesised(
    cached: Stack, change: dict[str, Any]
) -> None:
    body = {"text": "Cached line three."}
    if calls(cached.ledger, "differ-base") == 0:
        synthesised(cached, "differ-base", **body)
    name = "differ-" + "-".join(f"{k}" for k in change)
    synthesised(cached, name, **{**body, **change})
