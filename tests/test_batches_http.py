"""Batches, idempotent submits and signed webhooks through the real stack (API, synthesis
worker, I/O worker, Redis, S3) and a real receiver on loopback that is down at first."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.engines import calls
from tests.support.receiver import Receiver
from tests.support.servers import RedisServer, S3Server, wait_for
from tests.support.stack import DB, Stack


@pytest.fixture(scope="module")
def hooked(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("hooked"),
        redis_server,
        s3_server,
        db=DB["batches"],
        TTS_FETCH_ALLOW_CIDRS="127.0.0.0/8",
        TTS_WEBHOOK_RETRY_SCHEDULE_S="0.3,0.3,0.3,0.3,0.3",
        TTS_WEBHOOK_JITTER="0",
        TTS_WEBHOOK_POLL_S="0.2",
    )
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def receiver(hooked: Stack) -> Iterator[Receiver]:
    r = httpx.get(f"{hooked.url}/v1/webhook-secret", headers=hooked.headers("alice"), timeout=10)
    assert r.status_code == 200, r.text
    receiver = Receiver(secret=r.json()["secret"]).start()
    yield receiver
    receiver.stop()


def post(
    stack: Stack, path: str, body: Any, owner: str = "alice", key: str | None = None
) -> httpx.Response:
    headers = stack.headers(owner)
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{stack.url}{path}", json=body, headers=headers, timeout=30)


def test_a_50_item_batch_submitted_twice_runs_once_and_ends_in_one_signed_webhook(
    hooked: Stack, receiver: Receiver
) -> None:
    receiver.refuse_first = 2
    body = {
        "items": [
            {"ref": f"seg-{i}", "text": f"line {i}", "metadata": {"probe": f"batch50-{i}"}}
            for i in range(50)
        ],
        "webhook_url": receiver.url,
        "metadata": {"video": "v1"},
    }
    first = post(hooked, "/v1/batches", body, key="dub-v1")
    assert first.status_code == 202, first.text
    again = post(hooked, "/v1/batches", body, key="dub-v1")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    batch_id = first.json()["id"]
    assert again.json()["id"] == batch_id

    completed = wait_for(
        lambda: receiver.accepted("batch.completed"), 120, "batch.completed", every=0.2
    )
    (hook,) = completed
    assert hook.verified
    data = hook.payload["data"]
    assert data["id"] == batch_id and data["counts"] == {"succeeded": 50}
    assert [item["ref"] for item in data["items"]] == [f"seg-{i}" for i in range(50)]
    audio = httpx.get(data["items"][7]["audio_url"], timeout=10)
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    assert all(item["audio_url"] for item in data["items"])
    attempts = [
        r for r in receiver.received if r.headers["webhook-id"] == hook.headers["webhook-id"]
    ]
    assert [r.answered for r in attempts] == [503, 503, 200]
    assert all(r.verified for r in attempts)

    assert all(calls(hooked.ledger, f"batch50-{i}") == 1 for i in range(50))
    r = httpx.get(f"{hooked.url}/v1/batches/{batch_id}", headers=hooked.headers(), timeout=10)
    assert r.json()["status"] == "completed" and r.json()["counts"]["succeeded"] == 50
    assert all(item["audio_url"] for item in r.json()["items"])
    r = httpx.get(
        f"{hooked.url}/v1/batches/{batch_id}/deliveries", headers=hooked.headers(), timeout=10
    )
    (delivery,) = r.json()["data"]
    assert delivery["state"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [503, 503, 200]
    other = httpx.get(f"{hooked.url}/v1/batches/{batch_id}", headers=hooked.headers("bob"))
    assert other.status_code == 404


def test_a_bad_item_refuses_the_whole_batch_and_nothing_is_enqueued(hooked: Stack) -> None:
    items: list[dict[str, Any]] = [{"ref": f"s{i}", "text": "fine"} for i in range(10)]
    items[7] = {"ref": "s7", "text": "fine", "speed": 9}
    r = post(hooked, "/v1/batches", {"items": items}, owner="carol")
    assert r.status_code == 422
    assert r.json()["error"]["message"].startswith("items.7.speed")

    items[7] = {"ref": "s7", "text": "fine"}
    items[3] = {"ref": "s3", "text": "x" * 2001}
    r = post(hooked, "/v1/batches", {"items": items}, owner="carol")
    assert 400 <= r.status_code < 500, r.text
    assert "items.3" in r.json()["error"]["message"] and "'s3'" in r.json()["error"]["message"]

    r = post(
        hooked,
        "/v1/batches",
        {"items": items[:3], "webhook_url": "http://10.1.2.3/"},
        owner="carol",
    )
    assert r.status_code == 400 and "webhook_url" in r.json()["error"]["message"]

    listed = httpx.get(f"{hooked.url}/v1/jobs", headers=hooked.headers("carol"), timeout=10)
    assert listed.json()["data"] == []


def test_a_batch_may_be_larger_than_a_job_body(hooked: Stack) -> None:
    # 300 lines of 500 characters: about 160 KB, above the 64 KiB a job's body may be. The
    # last item is bad, so the answer proves the whole body was read, and nothing is stored.
    items: list[dict[str, Any]] = [{"ref": f"s{i}", "text": "配音" * 250} for i in range(300)]
    items[-1]["speed"] = 9
    r = post(hooked, "/v1/batches", {"items": items}, owner="dave")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith("items.299.speed")
    r = post(hooked, "/v1/jobs", {"text": "配音" * 250, "metadata": {"pad": "x" * 100_000}})
    assert r.status_code == 413 and "65536 bytes" in r.json()["error"]["message"]


def test_idempotent_job_submits_make_one_job_even_when_concurrent(hooked: Stack) -> None:
    body = {"text": "once only", "metadata": {"probe": "idem-job"}}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(hooked, "/v1/jobs", body, key="k-1"), range(8)))
    assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(1 for a in answers if a.headers.get("Idempotent-Replayed")) == 7
    job_id = answers[0].json()["id"]
    assert hooked.wait_end(job_id)["status"] == "succeeded"

    changed = post(hooked, "/v1/jobs", {**body, "text": "another"}, key="k-1")
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    bobs = post(hooked, "/v1/jobs", body, owner="bob", key="k-1")
    assert bobs.status_code == 202 and bobs.json()["id"] != job_id
    assert hooked.wait_end(bobs.json()["id"], owner="bob")["status"] == "succeeded"
    assert calls(hooked.ledger, "idem-job") == 2


def test_concurrent_idempotent_batches_make_one_batch(hooked: Stack) -> None:
    body = {"items": [{"ref": f"r{i}", "text": f"t {i}"} for i in range(5)]}
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda _: post(hooked, "/v1/batches", body, owner="dave", key="b-1"), range(6))
        )
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    listed = httpx.get(f"{hooked.url}/v1/jobs?limit=100", headers=hooked.headers("dave"))
    assert len(listed.json()["data"]) == 5, [
        (j["input"]["text"], j["status"], j["created_at"]) for j in listed.json()["data"]
    ]


def test_job_webhooks_through_the_stack_and_the_deliveries_route(
    hooked: Stack, receiver: Receiver
) -> None:
    receiver.refuse_first = 1
    r = post(
        hooked,
        "/v1/jobs",
        {
            "text": "hello",
            "webhook_url": receiver.url,
            "webhook_events": ["job.started", "job.succeeded"],
        },
    )
    job_id = r.json()["id"]
    assert r.json()["input"]["webhook_url"] == receiver.url
    wait_for(lambda: len(receiver.accepted()) == 2, 60, "two events", every=0.2)
    assert sorted(r.payload["type"] for r in receiver.accepted()) == [
        "job.started",
        "job.succeeded",
    ]
    assert all(r.verified for r in receiver.received)
    d = httpx.get(f"{hooked.url}/v1/jobs/{job_id}/deliveries", headers=hooked.headers())
    assert sorted(x["event"] for x in d.json()["data"]) == ["job.started", "job.succeeded"]
    assert all(len(x["attempts"]) == 2 for x in d.json()["data"])
    assert hooked.get(job_id)["status"] == "succeeded"


def test_a_canceled_batch_completes_with_every_item_canceled_or_ended(hooked: Stack) -> None:
    body = {
        "items": [
            {"ref": f"c{i}", "text": f"c {i}", "metadata": {"script": "sleep:0.3"}}
            for i in range(6)
        ]
    }
    r = post(hooked, "/v1/batches", body, owner="bob")
    batch_id = r.json()["id"]
    r = httpx.post(f"{hooked.url}/v1/batches/{batch_id}/cancel", headers=hooked.headers("bob"))
    assert r.status_code == 200 and r.json()["canceled_at"]
    assert r.json()["counts"]["canceled"] >= 1
    assert r.json()["counts"]["queued"] == 0 and r.json()["counts"]["running"] == 0
    done = wait_for(
        lambda: (
            (
                b := httpx.get(
                    f"{hooked.url}/v1/batches/{batch_id}", headers=hooked.headers("bob")
                ).json()
            )["status"]
            == "completed"
            and b
        ),
        30,
        "the batch to complete",
    )
    assert done["counts"]["canceled"] + done["counts"]["succeeded"] == 6


@pytest.mark.parametrize(
    "url",
    ["http://10.1.2.3/hook", "http://\u009dTG<\u00bd,\u00f1$/hook", "http://no-such-host.invalid/"],
)
def test_a_webhook_url_the_guard_refuses_is_a_400_and_stores_nothing(
    hooked: Stack, url: str
) -> None:
    r = post(hooked, "/v1/jobs", {"text": "hi", "webhook_url": url}, owner="carol")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "webhook_url_refused"
    assert r.json()["error"]["message"].startswith("webhook_url: ")
    listed = httpx.get(f"{hooked.url}/v1/jobs", headers=hooked.headers("carol"), timeout=10)
    assert listed.json()["data"] == []
