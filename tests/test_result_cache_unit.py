"""The result cache's key, and its entries across the source job's expiry, against a real
Redis, real local storage, the real synthesis, upload and sweeper functions (fake engine, clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from common import keys
from common.jobs.eta import estimate_wait_s, mean_synthesis_s
from common.jobs.store import JobStore
from common.resultcache import ResultCache, cache_key, engine_version
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord, JobStatus
from common.schemas.workers import EngineCapabilities, WorkerHeartbeat
from common.storage import LocalStorage
from common.voicestore import VoiceStore
from common.worker.delivery import UploadPolicy, run_upload
from gpu_worker.synthesis import run_synthesis
from io_worker.sweeper import Sweeper
from tests.support.servers import RedisServer
from tests.support.stack import DB
from tests.test_sweeper import Clock
from tests.test_synthesis_unit import FakeEngine

POLICY = UploadPolicy(max_attempts=3, backoff_s=0.1, backoff_max_s=1)

ENGINE = "fake/0"
BASE: dict[str, Any] = {"text": "the same line", "voice": "v"}


def key(store: JobStore, owner: str = "o", engine: str | None = ENGINE, **body: Any) -> str | None:
    request = JobRequest.model_validate({**BASE, **body})
    return cache_key(owner, request, engine=engine, voices=VoiceStore(store.redis))


@pytest.mark.parametrize(
    "change",
    [
        {"text": "another line"},
        {"voice": "fr"},
        {"language": "en"},
        {"format": "flac"},
        {"sample_rate": 16000},
        {"speed": 1.2},
        {"pitch": 1.1},
        {"energy": 1.5},
        {"loudness": -16.0},
        {"target_duration_s": 2.0},
        {"max_stretch": 2.0},
        {"channels": 2},
        {"trim_silence": True},
        {"generation": {"temperature": 0.7}},
        {"emotion": {"text": "happy"}},
        {"emotion": {"vector": {"sad": 0.5}}},
        {"segments": [{"text": "the same line"}]},
    ],
)
def test_any_option_that_shapes_the_audio_changes_the_key(
    store: JobStore, change: dict[str, Any]
) -> None:
    assert key(store) is not None
    assert key(store, **change) != key(store)


def test_the_engine_version_and_the_owner_are_part_of_the_key(store: JobStore) -> None:
    assert key(store, engine="fake/1") != key(store)
    assert key(store, owner="other") != key(store)


def test_metadata_webhooks_and_priority_leave_the_key_alone(store: JobStore) -> None:
    assert key(
        store,
        metadata={"probe": "x"},
        webhook_url="https://example.com/hook",
        webhook_events=["job.succeeded"],
        priority="batch",
    ) == key(store)


def test_uncacheable_jobs_have_no_key(store: JobStore) -> None:
    assert key(store, cache=False) is None
    assert key(store, emotion={"random": True}) is None
    assert key(store, voice=None, voice_url="https://example.com/v.wav") is None
    assert key(store, emotion={"audio_url": "https://example.com/e.wav"}) is None
    assert key(store, engine=None) is None  # no ready worker says what would run it
    assert key(store, voice="v_" + "0" * 32) is None  # an uploaded voice that is gone


def test_an_uploaded_voice_counts_by_its_content(store: JobStore) -> None:
    voices = VoiceStore(store.redis)
    one, _ = voices.create(
        "o", name="a", metadata={}, sha256="1" * 64, duration_s=2.0, sample_rate=16000
    )
    other, _ = voices.create(
        "o", name="b", metadata={}, sha256="2" * 64, duration_s=2.0, sample_rate=16000
    )
    assert key(store, voice=one.id) is not None
    assert key(store, voice=one.id) != key(store, voice=other.id)
    assert key(store, voice=one.id, owner="p") is None  # another key's voice is no voice


def test_workers_that_disagree_on_the_model_give_no_engine_version() -> None:
    def beat(version: str, kind: str = "synth", ready: bool = True) -> WorkerHeartbeat:
        return WorkerHeartbeat.model_validate(
            {
                "instance": version,
                "kind": kind,
                "hostname": "h",
                "pid": 1,
                "started_at": "2026-01-01T00:00:00Z",
                "engine": "e",
                "model_version": version,
                "ready": ready,
            }
        )

    assert engine_version([beat("1"), beat("1"), beat("2", kind="io")]) == "e/1"
    assert engine_version([beat("1"), beat("2")]) is None
    assert engine_version([beat("1", ready=False)]) is None


# -- entries across the source job's expiry ----------------------------------------------


def test_a_hit_owns_a_copy_that_outlives_the_source_jobs_expiry(
    store: JobStore, tmp_path: Path
) -> None:
    clock = Clock()
    jobs = JobStore(store.redis, job_ttl_s=3600, clock=clock)
    storage = LocalStorage(tmp_path, base_url="http://x", signing_key=b"k" * 32)
    cache = ResultCache(jobs.redis, storage)
    engine = FakeEngine()
    sweeper = Sweeper(
        store=jobs,
        storage=storage,
        publish_synthesis=lambda _: None,
        publish_upload=lambda _: None,
        grace_s=30,
        upload_lease_s=60,
        heartbeats=lambda: {},
        messages=set,
    )

    def submit() -> str:
        job = jobs.create("o", JobRequest.model_validate(BASE))
        jobs.set_cache_key(job.id, str(key(jobs)))
        return job.id

    def serve(job_id: str) -> bool:
        job = jobs.get(job_id)
        assert job is not None
        return cache.serve(jobs, job) is not None

    def synthesise(job_id: str) -> None:
        run_synthesis(job_id, store=jobs, engine=engine, instance="w", is_alive=lambda _: True,
                      max_attempts=3)  # fmt: skip
        run_upload(job_id, store=jobs, storage=storage, attempt=0, policy=POLICY)

    source = submit()
    assert not serve(source)  # nothing cached yet
    synthesise(source)
    clock.advance(1800)
    copy = submit()
    assert serve(copy) and engine.calls == 1
    source_job, copy_job = jobs.get(source), jobs.get(copy)
    assert source_job and copy_job and copy_job.cached and copy_job.status == JobStatus.succeeded
    assert source_job.audio and copy_job.audio and copy_job.audio.key != source_job.audio.key
    audio = storage.get(source_job.audio.key)

    clock.advance(1801)  # the source expires: its record and audio go, the copy's stay
    assert sweeper.sweep().expired == [source]
    assert jobs.get(source) is None and not storage.path(source_job.audio.key).exists()
    assert storage.get(copy_job.audio.key) == audio
    third = submit()
    assert serve(third) and engine.calls == 1  # answered from the copy, which is the entry now
    third_job = jobs.get(third)
    assert third_job and third_job.audio and storage.get(third_job.audio.key) == audio

    clock.advance(3601)  # every job with this audio expires: the entry goes with the last
    sweeper.sweep()
    assert store.redis.keys(keys.result("*")) == []
    fourth = submit()
    assert not serve(fourth)
    synthesise(fourth)
    assert engine.calls == 2


def test_an_entry_whose_audio_is_gone_is_a_miss_and_is_dropped(
    store: JobStore, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path, base_url="http://x", signing_key=b"k" * 32)
    cache = ResultCache(store.redis, storage)
    engine = FakeEngine()
    first = store.create("o", JobRequest.model_validate(BASE))
    store.set_cache_key(first.id, str(key(store)))
    run_synthesis(first.id, store=store, engine=engine, instance="w", is_alive=lambda _: True,
                  max_attempts=3)  # fmt: skip
    run_upload(first.id, store=store, storage=storage, attempt=0, policy=POLICY)
    done = store.get(first.id)
    assert done and done.audio
    storage.delete(done.audio.key)  # deleted behind the cache's back
    second = store.create("o", JobRequest.model_validate(BASE))
    second = second.model_copy(update={"cache_key": key(store)})
    assert cache.serve(store, second) is None
    assert store.get(second.id).status == JobStatus.queued  # type: ignore[union-attr]
    assert cache.lookup(str(key(store))) is None


# -- the synthesis worker's look, after fetching a voice_url --------------------------------


class CloningEngine(FakeEngine):
    def capabilities(self) -> EngineCapabilities:
        return super().capabilities().model_copy(update={"voice_cloning": True})


class UrlContent:
    """Stands in for `UrlVoices`: each URL's audio, as the content id a fetch gives."""

    def __init__(self, content: dict[str, str]) -> None:
        self.content = content

    def voice_id(self, url: str) -> str:
        return self.content[url]


def test_a_voice_url_job_is_answered_on_the_worker_by_the_fetched_audios_content(
    store: JobStore, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path, base_url="http://x", signing_key=b"k" * 32)
    cache = ResultCache(store.redis, storage)
    engine = CloningEngine()
    urls = UrlContent(
        {
            "https://a.example/one.wav": "sha256:" + "a" * 64,
            "https://b.example/same-audio.wav": "sha256:" + "a" * 64,
            "https://a.example/other.wav": "sha256:" + "b" * 64,
        }
    )

    def run(url: str) -> JobRecord:
        job = store.create("o", JobRequest(text="a cloned line", voice_url=url))
        # the API finds no key for a URL it has not fetched
        assert cache_key("o", job.request, engine=ENGINE, voices=VoiceStore(store.redis)) is None
        run_synthesis(job.id, store=store, engine=engine, instance="w", is_alive=lambda _: True,
                      max_attempts=3, url_voices=urls, results=cache)  # type: ignore[arg-type]  # fmt: skip
        run_upload(job.id, store=store, storage=storage, attempt=0, policy=POLICY)
        done = store.get(job.id)
        assert done is not None and done.status == JobStatus.succeeded and done.audio
        return done

    first = run("https://a.example/one.wav")
    second = run("https://b.example/same-audio.wav")
    assert engine.calls == 1 and not first.cached and second.cached
    assert storage.get(second.audio.key) == storage.get(first.audio.key)  # type: ignore[union-attr]
    third = run("https://a.example/other.wav")
    assert engine.calls == 2 and not third.cached


def test_the_wait_estimate_counts_the_jobs_ahead_and_the_busy_workers_over_the_ready_ones(
    store: JobStore,
) -> None:
    assert mean_synthesis_s(store.redis) is None
    for synth_s in (1.0, 3.0):
        job = store.create("o", JobRequest(text="x"))
        store.claim(job.id, "w", is_alive=lambda _: True, max_attempts=3)
        store.mark_synthesized(job.id, "w", b"", synth_s=synth_s, duration_s=1.0, warnings=[])
    mean_s = mean_synthesis_s(store.redis)
    assert mean_s == 2.0
    assert estimate_wait_s(3, mean_s=mean_s, ready=2, busy=2) == 5.0
    assert estimate_wait_s(0, mean_s=mean_s, ready=1, busy=0) == 0.0
    assert estimate_wait_s(3, mean_s=mean_s, ready=0, busy=0) is None
    assert estimate_wait_s(3, mean_s=None, ready=1, busy=1) is None


def test_a_submit_on_the_event_loop_holds_a_hit_back_and_sends_a_miss(
    store: JobStore, redis_server: RedisServer
) -> None:
    """`create_placed`, the API's one round trip: a key the cache holds keeps the job's message
    unsent (the job waits in the outbox for the API's copy); any other key sends it."""
    hit_key = key(store)
    assert hit_key is not None
    store.redis.set(keys.result(hit_key), "{}")
    request = JobRequest.model_validate(BASE)

    def message(job: JobRecord) -> tuple[str, bytes]:
        return "broker-list", job.id.encode()

    async def submit_both() -> tuple[Any, Any]:
        url = redis_server.url.removesuffix("/0") + f"/{DB['store']}"
        aclient = aioredis.Redis.from_url(url)
        api = JobStore(store.redis, aclient=aclient, job_ttl_s=60)
        try:
            hit = await api.create_placed("o", request, message=message, cache_key=hit_key)
            miss = await api.create_placed("o", request, message=message, cache_key="another")
            return hit, miss
        finally:
            await aclient.aclose()

    hit, miss = asyncio.run(submit_both())
    assert (hit.cached, miss.cached) == (True, False)
    assert (hit.position, miss.position) == (0, 1)
    assert store.redis.lrange("broker-list", 0, -1) == [miss.job.id.encode()]
    outbox = store.redis.zrange(keys.UNPUBLISHED, 0, -1)
    assert outbox == [hit.job.id.encode()]
