"""A long job says how far it is (segments done of total) while it runs, where the engine can
tell: a timed script's segments, or an engine's own reports. The IndexTTS2 adapter's part is
tested against the real upstream in tests/test_real_indextts.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from common.jobs.store import JobStore
from common.schemas.job_request import JobRequest, Segment
from common.schemas.jobs import JobRecord, Progress, Stage
from common.schemas.workers import EngineCapabilities
from gpu_worker.engines.base import SynthesisOutput, report_progress
from gpu_worker.progress import JobProgress
from gpu_worker.speech import speak
from gpu_worker.synthesis import Next, run_synthesis
from tests.support.stack import Stack


class WatchingEngine:
    """Notes what a client reading the job sees when each call starts (`seen`) and after it
    reported `reports` through the progress channel (`seen_after`)."""

    name, device, model_version = "watching", "cpu", "0"

    def __init__(
        self, store: JobStore, job_id: str, reports: tuple[tuple[int, int], ...] = ()
    ) -> None:
        self.store, self.job_id, self.reports = store, job_id, reports
        self.seen: list[Progress | None] = []
        self.seen_after: list[Progress | None] = []

    def capabilities(self) -> EngineCapabilities:
        return EngineCapabilities(
            engine="watching", sample_rate=100, voices=["v"], default_voice="v", languages=["en"]
        )

    def warmup(self) -> None: ...

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        self.seen.append(self.store.get(self.job_id).progress)
        for done, total in self.reports:
            report_progress(done, total)
        self.seen_after.append(self.store.get(self.job_id).progress)
        return SynthesisOutput(pcm16=b"\x01\x02" * 100, sample_rate=100)


def script(n: int) -> JobRequest:
    return JobRequest(text="script", segments=[Segment(text=f"line {i}") for i in range(n)])


def running(store: JobStore, request: JobRequest) -> JobRecord:
    job = store.create("o", request)
    assert store.claim(job.id, "w", is_alive=lambda _: True, max_attempts=3).job is not None
    return job


def synth(store: JobStore, job_id: str, engine: Any) -> Next:
    return run_synthesis(
        job_id, store=store, engine=engine, instance="w", is_alive=lambda _: True, max_attempts=3
    ).next


def test_a_timed_script_shows_each_segment_done_while_it_runs(store: JobStore) -> None:
    job = running(store, script(3))
    engine = WatchingEngine(store, job.id)
    speak(job.request, engine, max_stretch=1.5, progress=JobProgress(store, job.id, "w", every_s=0))
    assert engine.seen == [Progress(done=d, total=3) for d in (0, 1, 2)]
    assert store.get(job.id).progress == Progress(done=3, total=3)


def test_a_worker_shows_the_scripts_total_from_the_start_and_clears_it_after(
    store: JobStore,
) -> None:
    job = store.create("o", script(3))
    engine = WatchingEngine(store, job.id)
    assert synth(store, job.id, engine) == Next.upload
    assert engine.seen[0] == Progress(done=0, total=3)
    after = store.get(job.id)
    assert after.stage == Stage.uploading and after.progress is None


def test_an_engines_own_reports_show_for_a_plain_text(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="a long text"))
    engine = WatchingEngine(store, job.id, reports=((1, 4),))
    assert synth(store, job.id, engine) == Next.upload
    assert engine.seen == [None] and engine.seen_after == [Progress(done=1, total=4)]
    assert store.get(job.id).progress is None


def test_in_a_timed_script_the_segments_count_not_the_engines_own_reports(
    store: JobStore,
) -> None:
    job = running(store, script(2))
    engine = WatchingEngine(store, job.id, reports=((1, 7),))
    speak(job.request, engine, max_stretch=1.5, progress=JobProgress(store, job.id, "w", every_s=0))
    assert engine.seen_after == [Progress(done=0, total=2), Progress(done=1, total=2)]
    assert store.get(job.id).progress == Progress(done=2, total=2)


def test_progress_is_written_at_most_once_per_interval(store: JobStore) -> None:
    job = running(store, script(4))
    now = [0.0]
    listener = JobProgress(store, job.id, "w", every_s=0.5, clock=lambda: now[0])
    for at, done in ((0.0, 1), (0.3, 2), (0.6, 3)):
        now[0] = at
        listener(done, 4)
        if at == 0.3:
            assert store.get(job.id).progress == Progress(done=1, total=4)
    assert store.get(job.id).progress == Progress(done=3, total=4)


class NoProgressStore(JobStore):
    def note_progress(self, job_id: str, instance: str, done: int, total: int) -> bool:
        raise redis.ConnectionError("Redis went away (scripted)")


def test_a_redis_error_writing_progress_never_fails_the_job(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = NoProgressStore(store.redis, job_ttl_s=60)
    job = flaky.create("o", script(3))
    with caplog.at_level(logging.WARNING, logger="gpu_worker.progress"):
        assert synth(flaky, job.id, WatchingEngine(store, job.id)) == Next.upload
    assert flaky.get(job.id).stage == Stage.uploading
    assert f"[job {job.id}] progress not recorded" in caplog.text


def test_progress_is_never_a_state_change_and_only_the_holder_writes_it(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    job = running(store, script(3))
    with caplog.at_level(logging.INFO, logger="common.jobs.store"):
        assert store.note_progress(job.id, "w", 1, 3)
    assert not caplog.records
    after = store.get(job.id)
    assert (after.status, after.stage, after.progress) == (
        "running",
        Stage.synthesizing,
        Progress(done=1, total=3),
    )
    assert not store.note_progress(job.id, "another-worker", 2, 3)
    assert store.get(job.id).progress == Progress(done=1, total=3)


def test_progress_goes_when_the_job_leaves_synthesis(store: JobStore) -> None:
    job = running(store, script(3))
    store.note_progress(job.id, "w", 1, 3)
    assert store.requeue(job.id)
    assert store.get(job.id).progress is None
    assert store.claim(job.id, "w", is_alive=lambda _: True, max_attempts=3).job is not None
    store.note_progress(job.id, "w", 2, 3)
    store.cancel(job.id, "o")
    assert store.get(job.id).progress is None
    assert not store.note_progress(job.id, "w", 3, 3)
    assert store.get(job.id).progress is None


def test_a_running_timed_script_shows_its_progress_through_the_api(stack: Stack) -> None:
    segments = [{"text": f"Line number {i}."} for i in range(4)]
    job = stack.submit(text="script", segments=segments, metadata={"script": "sleep:0.6"})
    looks: list[dict[str, Any]] = []
    now = stack.wait_end(job["id"], timeout=30, every=0.05, watch=looks.append)
    showing = [look for look in looks if look["progress"] is not None]
    assert all((j["status"], j["stage"]) == ("running", "synthesizing") for j in showing), showing
    seen = [look["progress"] for look in showing]
    assert now["status"] == "succeeded" and now["progress"] is None
    assert {p["total"] for p in seen} == {4}
    done = [p["done"] for p in seen]
    assert done == sorted(done) and any(0 < d < 4 for d in done), seen
