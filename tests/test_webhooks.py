"""Webhook delivery against a real receiver on loopback and a real Redis: signing, retries,
Retry-After, 410, the address guard, lost messages, and the events the job store emits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from common import keys
from common.jobs.batches import BatchStore
from common.jobs.store import JobStore, utcnow
from common.schemas.job_request import JobRequest
from common.schemas.jobs import AudioInfo, JobRecord
from common.schemas.webhooks import DeliveryState
from common.settings import Settings
from common.webhooks import deliveries_of, secret_for
from io_worker.webhooks import Pump, lease_s, run_delivery
from tests.support.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeStorage:
    def url(self, key: str, ttl_s: int) -> str:
        return f"https://files.example/{key}?ttl={ttl_s}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(store: JobStore, clock: Clock) -> JobStore:
    return JobStore(store.redis, job_ttl_s=3600, clock=clock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET).start()
    yield r
    r.stop()


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "webhook_secret": SECRET,
        "webhook_retry_schedule_s": "1,2,4",
        "webhook_jitter": 0.0,
        "fetch_allow_cidrs": "127.0.0.0/8",
    }
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def succeed(store: JobStore, request: JobRequest, owner: str = "alice") -> JobRecord:
    job = store.create(owner, request)
    store.claim(job.id, "w1", is_alive=lambda _: True, max_attempts=3)
    store.mark_synthesized(job.id, "w1", b"RIFF", synth_s=1.0, duration_s=1.0, warnings=[])
    audio = AudioInfo(
        key=f"audio/{job.id}.wav", sample_rate=16000, duration_s=1.0, size_bytes=4, sha256="0"
    )
    assert store.mark_succeeded(job.id, audio)
    return job


def deliver_due(pump: Pump, cfg: Settings, clock: Clock) -> list[DeliveryState | None]:
    return [
        run_delivery(
            delivery_id, client=pump.client, settings=cfg, storage=FakeStorage(), clock=clock
        )
        for delivery_id in pump.run()
    ]


def test_a_receiver_that_refuses_twice_gets_the_event_on_the_third_attempt_signed_the_same(
    jobs: JobStore, clock: Clock, receiver: Receiver
) -> None:
    receiver.refuse_first = 2
    cfg = settings()
    job = succeed(jobs, JobRequest(text="hello", webhook_url=receiver.url))
    pump = Pump(jobs.redis, BatchStore(jobs), cfg, publish=lambda _: None, clock=clock)

    assert deliver_due(pump, cfg, clock) == [DeliveryState.pending]
    assert deliver_due(pump, cfg, clock) == []  # the next attempt is not due yet
    clock.advance(1.01)
    assert deliver_due(pump, cfg, clock) == [DeliveryState.pending]
    clock.advance(2.01)
    assert deliver_due(pump, cfg, clock) == [DeliveryState.delivered]
    clock.advance(60)
    assert deliver_due(pump, cfg, clock) == []

    assert [r.answered for r in receiver.received] == [503, 503, 200]
    assert all(r.verified for r in receiver.received)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    payload = receiver.accepted()[0].payload
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job.id and payload["data"]["status"] == "succeeded"
    assert payload["data"]["audio_url"].startswith(f"https://files.example/audio/{job.id}.wav")
    (delivery,) = deliveries_of(jobs.redis, job.id)
    assert delivery.state == DeliveryState.delivered
    assert [a.status_code for a in delivery.attempts] == [503, 503, 200]
    after = jobs.get(job.id)
    assert after is not None and after.status == "succeeded"


def test_the_default_secret_is_derived_per_api_key_and_verifies(
    jobs: JobStore, clock: Clock, receiver: Receiver
) -> None:
    cfg = settings(webhook_secret=None)
    alice, bob = secret_for("alice", cfg, jobs.redis), secret_for("bob", cfg, jobs.redis)
    assert alice.startswith("whsec_") and alice != bob
    assert secret_for("alice", cfg, jobs.redis) == alice
    receiver.secret = bob
    succeed(jobs, JobRequest(text="hello", webhook_url=receiver.url), owner="bob")
    pump = Pump(jobs.redis, BatchStore(jobs), cfg, publish=lambda _: None, clock=clock)
    assert deliver_due(pump, cfg, clock) == [DeliveryState.delivered]
    assert receiver.received[0].verified


def test_retry_after_is_honoured_and_410_stops(
    jobs: JobStore, clock: Clock, receiver: Receiver
) -> None:
    receiver.refuse_first, receiver.refuse_with = 1, 429
    receiver.extra_headers = {"Retry-After": "100"}
    cfg = settings()
    job = succeed(jobs, JobRequest(text="hello", webhook_url=receiver.url))
    pump = Pump(jobs.redis, BatchStore(jobs), cfg, publish=lambda _: None, clock=clock)
    assert deliver_due(pump, cfg, clock) == [DeliveryState.pending]
    clock.advance(50)
    assert deliver_due(pump, cfg, clock) == []
    clock.advance(51)
    assert deliver_due(pump, cfg, clock) == [DeliveryState.delivered]

    receiver.received.clear()
    receiver.refuse_first, receiver.refuse_with, receiver.extra_headers = 5, 410, {}
    other = succeed(jobs, JobRequest(text="again", webhook_url=receiver.url))
    assert deliver_due(pump, cfg, clock) == [DeliveryState.failed]
    clock.advance(600)
    assert deliver_due(pump, cfg, clock) == []
    assert [r.answered for r in receiver.received] == [410]
    (delivery,) = deliveries_of(jobs.redis, other.id)
    assert "410" in str(delivery.attempts[0].error)
    assert jobs.get(other.id).status == "succeeded"  # type: ignore[union-attr]
    assert job.id != other.id


def test_a_receiver_that_stays_down_fails_the_delivery_after_the_schedule_not_the_job(
    jobs: JobStore, clock: Clock, receiver: Receiver
) -> None:
    receiver.refuse_first = 100
    cfg = settings()
    job = succeed(jobs, JobRequest(text="hello", webhook_url=receiver.url))
    pump = Pump(jobs.redis, BatchStore(jobs), cfg, publish=lambda _: None, clock=clock)
    states = []
    for _ in range(6):
        states += deliver_due(pump, cfg, clock)
        clock.advance(5)
    assert states == [DeliveryState.pending] * 3 + [DeliveryState.failed]
    (delivery,) = deliveries_of(jobs.redis, job.id)
    assert len(delivery.attempts) == 4 and delivery.state == DeliveryState.failed
    assert jobs.get(job.id).status == "succeeded"  # type: ignore[union-attr]


def test_a_private_address_is_refused_at_delivery_without_an_allow_list(
    jobs: JobStore, clock: Clock, receiver: Receiver
) -> None:
    cfg = settings(fetch_allow_cidrs="")
    job = succeed(jobs, JobRequest(text="hello", webhook_url=receiver.url))
    pump = Pump(jobs.redis, BatchStore(jobs), cfg, publish=lambda _: None, clock=clock)
    assert deliver_due(pump, cfg, clock) == [DeliveryState.failed]
    assert receiver.received == []
    (delivery,) = deliveries_of(jobs.redis, job.id)
    assert "not a public address" in str(delivery.attempts[0].error)


def test_a_delivery_whose_message_was_lost_is_sent_again_after_its_lease_only(
    jobs: JobStore, clock: Clock
) -> None:
    cfg = settings()
    sent: list[str] = []
    succeed(jobs, JobRequest(text="hello", webhook_url="http://127.0.0.1:9/hook"))
    pump = Pump(jobs.redis, BatchStore(jobs), cfg, publish=sent.append, clock=clock)
    pump.run()
    assert len(sent) == 1
    clock.advance(lease_s(cfg) - 1)
    pump.run()
    other = Pump(jobs.redis, BatchStore(jobs), cfg, publish=sent.append, clock=clock)
    other.run()
    assert len(sent) == 1
    clock.advance(2)
    other.run()
    pump.run()
    assert len(sent) == 2 and sent[0] == sent[1]


def test_job_events_follow_the_status_and_only_those_asked_for(
    jobs: JobStore, clock: Clock
) -> None:
    hook = "http://127.0.0.1:9/hook"
    every = JobRequest(
        text="a", webhook_url=hook, webhook_events=["job.started", "job.succeeded", "job.failed"]
    )
    job = jobs.create("alice", every)
    jobs.claim(job.id, "w1", is_alive=lambda _: False, max_attempts=3)
    jobs.requeue(job.id)
    jobs.claim(job.id, "w2", is_alive=lambda _: False, max_attempts=3)  # started once only
    jobs.fail(job.id, "engine_rejected_input", "no", retryable=False)
    assert [d.event for d in deliveries_of(jobs.redis, job.id)] == ["job.started", "job.failed"]
    assert deliveries_of(jobs.redis, job.id)[1].data["error"]["code"] == "engine_rejected_input"

    default = jobs.create("alice", JobRequest(text="b", webhook_url=hook))
    jobs.claim(default.id, "w1", is_alive=lambda _: False, max_attempts=3)
    jobs.cancel(default.id, "alice")
    assert [d.event for d in deliveries_of(jobs.redis, default.id)] == ["job.canceled"]

    silent = jobs.create("alice", JobRequest(text="c"))
    jobs.cancel(silent.id, "alice")
    assert deliveries_of(jobs.redis, silent.id) == []
    assert jobs.redis.zcard(keys.WEBHOOKS_DUE) == 3
