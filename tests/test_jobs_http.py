"""The core path over real HTTP: a real API, Celery workers, Redis and S3 server."""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import urljoin

import httpx
import pytest

from tests.support.engines import calls
from tests.support.stack import KEYS, Stack, wav_ok

pytestmark = pytest.mark.integration


def probe() -> str:
    return uuid.uuid4().hex


def test_submitted_job_ends_with_playable_speech_at_its_audio_url(stack: Stack) -> None:
    job = stack.submit(text="Hello from the dubbing pipeline.", metadata={"scene": "12"})
    assert job["status"] in {"queued", "running", "succeeded"}
    assert job["urls"]["self"].endswith(f"/v1/jobs/{job['id']}")
    done = stack.wait_end(job["id"])
    assert done["status"] == "succeeded", done
    audio = done["audio"]
    body = httpx.get(audio["url"], timeout=10).content
    assert hashlib.sha256(body).hexdigest() == audio["sha256"]
    assert len(body) == audio["size_bytes"]
    assert wav_ok(body) == pytest.approx(audio["duration_s"], abs=0.01)
    assert audio["sample_rate"] == 22050 and audio["format"] == "wav"
    assert done["metrics"]["synth_s"] > 0 and done["metrics"]["rtf"] > 0
    assert done["input"]["metadata"] == {"scene": "12"}


def test_chinese_text_is_spoken(stack: Stack) -> None:
    done = stack.wait_end(stack.submit(text="你好，世界。今天天气很好。")["id"])
    assert done["status"] == "succeeded"
    assert wav_ok(httpx.get(done["audio"]["url"]).content) > 1.0


def test_audio_url_is_fresh_on_every_read_and_audio_route_redirects(stack: Stack) -> None:
    done = stack.wait_end(stack.submit(text="fresh links")["id"])
    again = stack.get(done["id"])
    assert again["audio"]["sha256"] == done["audio"]["sha256"]
    r = httpx.get(done["urls"]["audio"], headers=stack.headers())
    assert r.status_code == 307
    assert httpx.get(r.headers["location"]).content[:4] == b"RIFF"


def test_prefer_wait_answers_200_with_the_finished_job(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs",
        json={"text": "wait for me"},
        headers={**stack.headers(), "Prefer": "wait=20"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert r.headers["preference-applied"] == "wait=20"


def test_prefer_wait_that_runs_out_answers_202_with_the_job_in_progress(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs",
        json={"text": "slow", "metadata": {"script": "sleep:3"}},
        headers={**stack.headers(), "Prefer": "wait=1"},
        timeout=30,
    )
    assert r.status_code == 202
    assert r.json()["status"] in {"queued", "running"}
    stack.wait_end(r.json()["id"])


def test_synthesize_answers_in_one_call_with_the_original_contract(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.url}/synthesize", json={"text": "one call"}, headers=stack.headers(), timeout=70
    )
    assert r.status_code == 200
    answer = r.json()
    assert set(answer) == {
        "audio_url",
        "duration_ms",
        "sample_rate",
        "format",
        "file_size",
        "warnings",  # a list Go's decoder ignores: what the answer differs in from the request
    }
    assert answer["warnings"] == []
    audio = httpx.get(urljoin(stack.url + "/", answer["audio_url"]))  # no key needed
    assert audio.status_code == 200 and len(audio.content) == answer["file_size"]


def test_bearer_token_is_accepted_like_x_api_key(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/v1/jobs", headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert r.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "nope"}, {"Authorization": "Bearer nope"}])
def test_missing_or_wrong_key_is_refused_and_nothing_is_queued(
    stack: Stack, headers: dict[str, str]
) -> None:
    before = httpx.get(f"{stack.url}/ready", headers=stack.headers()).json()["queue_depth"]
    r = httpx.post(f"{stack.url}/v1/jobs", json={"text": "hi"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] in {"missing_api_key", "invalid_api_key"}
    assert httpx.get(f"{stack.url}/ready", headers=stack.headers()).json()["queue_depth"] == before


def test_health_needs_no_key(stack: Stack) -> None:
    health = httpx.get(f"{stack.url}/health").json()
    assert health["status"] == "healthy" and health["model_loaded"] is True
    assert httpx.get(f"{stack.url}/ready").status_code == 401


def test_ready_reports_workers_and_queue_depth(stack: Stack) -> None:
    ready = httpx.get(f"{stack.url}/ready", headers=stack.headers()).json()
    assert ready["ready"] and ready["synth_workers_ready"] == 1 and ready["io_workers"] == 1


def test_engine_route_names_the_running_engine_and_its_voices(stack: Stack) -> None:
    info = httpx.get(f"{stack.url}/v1/engine", headers=stack.headers()).json()
    assert info["engines"][0]["engine"] == "scripted-espeak"
    assert "cmn" in info["engines"][0]["voices"]
    assert info["workers"][0]["ready"] is True


def test_one_key_cannot_read_cancel_or_download_another_keys_job(stack: Stack) -> None:
    done = stack.wait_end(stack.submit(text="private")["id"])
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/audio")]:
        r = httpx.request(
            method, f"{stack.url}/v1/jobs/{done['id']}{path}", headers=stack.headers("bob")
        )
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["code"] == "job_not_found"
    ids = [
        j["id"]
        for j in httpx.get(f"{stack.url}/v1/jobs", headers=stack.headers("bob")).json()["data"]
    ]
    assert done["id"] not in ids


def test_canceled_queued_job_never_reaches_the_engine(stack: Stack) -> None:
    blocker = stack.submit(text="busy", metadata={"script": "sleep:2"})
    stack.wait_status(blocker["id"], "running")
    # The worker claims one job ahead of the engine (`gpu_worker/pipeline.py`): this one.
    stack.wait_status(stack.submit(text="next up")["id"], "running")
    p = probe()
    queued = stack.submit(text="never spoken", metadata={"probe": p})
    assert stack.get(queued["id"])["queue_position"] == 0
    r = httpx.post(queued["urls"]["cancel"], headers=stack.headers())
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    stack.wait_end(blocker["id"])
    after = stack.submit(text="after")  # the worker has moved past the canceled message
    stack.wait_end(after["id"])
    assert calls(stack.ledger, p) == 0
    assert stack.get(queued["id"])["status"] == "canceled"


def test_a_job_canceled_while_it_waits_for_the_engine_never_reaches_it(stack: Stack) -> None:
    blocker = stack.submit(text="busy", metadata={"script": "sleep:2"})
    stack.wait_status(blocker["id"], "running")
    p = probe()
    waiting = stack.submit(text="claimed, never spoken", metadata={"probe": p})
    stack.wait_status(waiting["id"], "running")  # prepared, waiting for the engine
    r = httpx.post(waiting["urls"]["cancel"], headers=stack.headers())
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    stack.wait_end(blocker["id"])
    stack.wait_end(stack.submit(text="after")["id"])
    assert calls(stack.ledger, p) == 0
    assert stack.get(waiting["id"])["status"] == "canceled"


def test_canceled_running_job_ends_canceled_and_its_audio_is_discarded(stack: Stack) -> None:
    job = stack.submit(text="discard me", metadata={"script": "sleep:1.5"})
    stack.wait_status(job["id"], "running")
    r = httpx.post(job["urls"]["cancel"], headers=stack.headers())
    assert r.json()["status"] == "canceled"
    stack.wait_end(stack.submit(text="after")["id"])
    final = stack.get(job["id"])
    assert final["status"] == "canceled" and final["audio"] is None
    assert f"audio/{job['id']}.wav" not in stack.s3.objects()  # type: ignore[union-attr]


def test_cancel_of_an_ended_job_is_a_conflict(stack: Stack) -> None:
    done = stack.wait_end(stack.submit(text="done")["id"])
    r = httpx.post(done["urls"]["cancel"], headers=stack.headers())
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_ended"


def test_listing_is_newest_first_filters_by_status_and_pages_by_cursor(stack: Stack) -> None:
    ids = [stack.submit("carol", text=f"line {i}")["id"] for i in range(5)]
    for job_id in ids:
        stack.wait_end(job_id, owner="carol")
    h = stack.headers("carol")
    page1 = httpx.get(f"{stack.url}/v1/jobs", params={"limit": 3}, headers=h).json()
    page2 = httpx.get(
        f"{stack.url}/v1/jobs", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=h
    ).json()
    listed = [j["id"] for j in page1["data"] + page2["data"]]
    assert listed == list(reversed(ids))  # the key's newest five (other tests share the key)
    failed = httpx.get(f"{stack.url}/v1/jobs", params={"status": "failed"}, headers=h).json()
    assert not {j["id"] for j in failed["data"]} & set(ids)


def test_engine_rejection_fails_the_job_visibly(stack: Stack) -> None:
    done = stack.wait_end(stack.submit(text="x", metadata={"script": "reject"})["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "engine_rejected_input"
    assert done["attempts"] == 1
