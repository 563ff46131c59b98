"""`ttsq.client` against a running stack, and its backoff against a scripted transport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from common.schemas.jobs import JobStatus
from tests.support.servers import free_port
from tests.support.stack import KEYS, Stack, wav_ok
from ttsq import client as client_module
from ttsq.client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    JobNotSucceeded,
    NotFound,
    ServiceBusy,
    Unauthorized,
    Unreachable,
    WaitTimeout,
)

pytestmark = pytest.mark.integration


def test_submit_wait_download_through_a_running_stack(stack: Stack, tmp_path: Any) -> None:
    with Client(stack.url, KEYS["alice"]) as tts:
        assert tts.health().status == httpx.get(f"{stack.url}/health").json()["status"]
        job = tts.submit("Hello from the client.", metadata={"probe": "client-sync"})
        assert job.status in (JobStatus.queued, JobStatus.running, JobStatus.succeeded)
        done = tts.wait(job, timeout=60)
        assert done.status is JobStatus.succeeded and done.audio is not None
        data = tts.download(done, tmp_path / "hello.wav")
        assert (tmp_path / "hello.wav").read_bytes() == data
        assert wav_ok(data) > 0.3
        assert done.id in [j.id for j in tts.list_jobs(limit=100).data]


def test_the_env_configures_the_client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTS_SERVICE_URL", stack.url)
    monkeypatch.setenv("TTS_API_KEY", KEYS["bob"])
    with Client() as tts:
        job = tts.wait(tts.submit("Configured by the environment.", wait_s=30), timeout=60)
    assert job.status is JobStatus.succeeded
    assert stack.get(job.id, owner="bob")["status"] == "succeeded"


def test_errors_are_typed_and_carry_the_envelopes_code(stack: Stack) -> None:
    with Client(stack.url, KEYS["alice"]) as alice, Client(stack.url, KEYS["bob"]) as bob:
        job = alice.wait(alice.submit("Mine alone.", wait_s=30), timeout=60)
        with pytest.raises(NotFound) as lost:
            bob.get(job.id)
        assert lost.value.status == 404 and lost.value.code == "job_not_found"
        with pytest.raises(Conflict) as ended:
            alice.cancel(job)
        assert ended.value.code == "job_ended"
        with pytest.raises(InvalidRequest) as bad:
            alice.submit("!!!")  # no letter or digit: refused by the API, not by the client
        assert bad.value.status == 422
    with Client(stack.url, "not-a-key") as stranger, pytest.raises(Unauthorized) as denied:
        stranger.get(job.id)
    assert denied.value.code == "invalid_api_key"
    with Client(f"http://127.0.0.1:{free_port()}", "k") as nowhere, pytest.raises(Unreachable):
        nowhere.health()


def test_wait_gives_up_at_its_timeout_and_cancel_ends_the_job(stack: Stack) -> None:
    with Client(stack.url, KEYS["alice"]) as tts:
        job = tts.submit("A slow one.", metadata={"script": "sleep:4"})
        with pytest.raises(WaitTimeout):
            tts.wait(job, timeout=0.5)
        assert tts.cancel(job).status is JobStatus.canceled
        with pytest.raises(JobNotSucceeded) as no_audio:
            tts.download(job)
        assert no_audio.value.code == "canceled"


def test_the_async_client_does_the_same(stack: Stack) -> None:
    async def run() -> tuple[str, bytes]:
        async with AsyncClient(stack.url, KEYS["carol"]) as tts:
            said = httpx.get(f"{stack.url}/health").json()["status"]
            assert (await tts.health()).status == said
            jobs = [await tts.submit(f"Async line {n}.") for n in range(2)]
            done = await asyncio.gather(*(tts.wait(j, timeout=60) for j in jobs))
            assert {j.status for j in done} == {JobStatus.succeeded}
            with pytest.raises(NotFound):
                await tts.get("0" * 32)
            return done[0].id, await tts.download(done[0])

    job_id, data = asyncio.run(run())
    assert wav_ok(data) > 0.3
    assert stack.get(job_id, owner="carol")["status"] == "succeeded"


def _job_json(job_id: str, status: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": status,
        "stage": None,
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
        "expires_at": None,
        "attempts": 1,
        "input": {"text": "hi"},
        "urls": {"self": "s", "audio": "a", "cancel": "c"},
        "metrics": {},
        "warnings": [],
    }


def test_wait_rides_out_busy_answers_after_their_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [
        httpx.Response(
            503,
            headers={"Retry-After": "7"},
            json={"error": {"code": "queue_unavailable", "message": "retry shortly"}},
        ),
        httpx.Response(200, json=_job_json("a" * 32, "running")),
        httpx.Response(200, json=_job_json("a" * 32, "succeeded")),
    ]
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    transport = httpx.MockTransport(lambda request: answers.pop(0))
    with Client("http://tts.invalid", "k", transport=transport) as tts:
        job = tts.wait("a" * 32, timeout=600)
    assert job.status is JobStatus.succeeded
    assert slept[0] == 7  # the server's Retry-After, not the client's own backoff
    assert slept[1] < 7  # then back to polling


def test_submit_resends_a_refused_submission_but_not_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []

    def busy(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(
            429,
            headers={"Retry-After": "1"},
            json={"error": {"code": "too_many_requests", "message": "slow down"}},
        )

    monkeypatch.setattr(client_module.time, "sleep", lambda s: None)
    transport = httpx.MockTransport(busy)
    with (
        Client("http://tts.invalid", "k", transport=transport) as tts,
        pytest.raises(ServiceBusy) as refused,
    ):
        tts.submit("hi", voice="narrator")
    assert refused.value.code == "too_many_requests" and refused.value.retry_after == 1
    assert len(seen) == client_module.SUBMIT_RETRIES + 1
    assert seen[0] == {"text": "hi", "voice": "narrator"}  # only what the caller set
