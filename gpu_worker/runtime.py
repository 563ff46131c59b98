"""What the synthesis process holds for its whole life: the worker's parts and its engine.

The engine is built in the process that runs the jobs (the prefork child), never in a parent
that forks, so CUDA is initialised once, where it is used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from celery import Celery

from common.broker import publish_upload, upload_message
from common.jobs.store import utcnow
from common.netguard import parse_cidrs
from common.resultcache import ResultCache
from common.settings import Settings
from common.voicestore import VoiceStore
from common.worker.delivery import UploadHere, UploadPolicy
from common.worker.heartbeat import Heartbeat
from common.worker.lifecycle import Held, base, describe, patiently, stop_worker
from gpu_worker.ends_heard import EndsHeard
from gpu_worker.engines import load_engine
from gpu_worker.engines.base import Engine
from gpu_worker.pipeline import Pipeline
from gpu_worker.synthesis import Next, Prepared, Spoken, Synthesizer
from gpu_worker.uploaded_voices import UploadedVoices
from gpu_worker.url_voices import UrlVoices
from gpu_worker.voices import VoiceCache

log = logging.getLogger(__name__)


@dataclass
class Runtime(Held):
    engine: Engine
    #: The steps of a job, and the threads that run them.
    synthesizer: Synthesizer
    pipeline: Pipeline[Prepared, Spoken]

    def engine_memory_mb(self) -> float:
        probe = getattr(self.engine, "memory_mb", None)
        return float(probe()) if probe is not None else 0.0


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not started")
    return _current


def start(settings: Settings, app: Celery) -> Runtime:
    """Load and warm the engine, then start the heartbeat that says so and the pipeline."""
    global _current
    parts = base(settings, "synth")
    client, store, storage, heartbeat = parts.redis, parts.store, parts.storage, parts.heartbeat
    heartbeat.start()  # alive (not ready) while the model loads
    try:
        t0 = time.perf_counter()
        engine = load_engine(settings)
        t1 = time.perf_counter()
        engine.warmup()
        t2 = time.perf_counter()
    except Exception as exc:
        # Any failure here (missing weights, an OSError from a hub lookup, CUDA OOM while
        # warming up): a worker without an engine must not live on and swallow messages.
        heartbeat.stop()
        stop_worker(f"engine {settings.backend} failed to start: {describe(exc)}", in_child=True)
        raise
    log.info(
        "engine %s loaded in %.2fs, warmed up in %.2fs (device %s, %s)",
        engine.name,
        t1 - t0,
        t2 - t1,
        engine.device,
        engine.model_version,
    )
    heartbeat.update(
        engine=engine.name,
        device=engine.device,
        model_version=engine.model_version,
        ready=True,
        capabilities=engine.capabilities(),
    )
    # Voices come and go while the worker runs: publish what the engine can use now.
    heartbeat.refresh = lambda: {
        "capabilities": engine.capabilities(),
        # For `ttsq_worker_gpu_memory_bytes`: read on the heartbeat's thread, off the GPU's path.
        "gpu_memory_mb": float(getattr(engine, "memory_mb", lambda: 0.0)()),
    }
    url_voices = UrlVoices(
        VoiceCache(
            settings.voices_dir or settings.data_dir / "voices",
            settings.data_dir / "voice-cache",
            max_files=settings.voice_cache_files,
        ),
        allow=parse_cidrs(settings.fetch_allow_cidrs),
        max_bytes=settings.fetch_max_bytes,
        timeout_s=settings.fetch_timeout_s,
    )
    synthesizer = Synthesizer(
        store=store,
        engine=engine,
        instance=parts.instance,
        is_alive=parts.is_alive,
        max_attempts=settings.max_attempts,
        upload_lease_s=settings.stuck_grace_s,
        max_stretch=settings.max_stretch,
        strict_duration=settings.strict_duration,
        max_strict_stretch=settings.max_strict_stretch,
        url_voices=url_voices,
        uploaded_voices=UploadedVoices(VoiceStore(client), storage, url_voices.cache),
        results=ResultCache(client, storage) if settings.result_cache else None,
        upload_message=lambda job: upload_message(app, job.id),
        upload_here=UploadHere(store, storage, UploadPolicy.of(settings))
        if settings.upload_when_idle
        else None,
        engine_batch=settings.engine_batch,
        ends=EndsHeard(client, heartbeat).start(),
    )
    pipeline = synthesis_pipeline(heartbeat, synthesizer, app, batch=settings.engine_batch)
    synthesizer.engine_idle = pipeline.idle
    _current = Runtime(parts, engine, synthesizer, pipeline)
    return _current


def synthesis_pipeline(
    heartbeat: Heartbeat, synthesizer: Synthesizer, app: Celery, *, batch: int = 1
) -> Pipeline[Prepared, Spoken]:
    """The engine's thread and the finisher's (`gpu_worker/pipeline.py`) for this process."""

    def speak(jobs: Sequence[Prepared]) -> list[Spoken]:
        # In memory: no Redis between jobs. A batch names its first job.
        heartbeat.note(current_job=jobs[0].job.id)
        spoken = synthesizer.speak_jobs(jobs)
        heartbeat.note(current_job=None)
        return spoken

    def hand_on(prepared: Prepared, spoken: Spoken) -> None:
        job_id = prepared.job.id
        try:
            outcome = patiently(lambda: synthesizer.finish(prepared, spoken))
            if outcome.next == Next.upload:  # not sent with the hand-off (`Next.uploading`)
                # Lost (an outage past the retries): the sweeper resends it once the lease passes.
                patiently(lambda: publish_upload(app, job_id))
        finally:
            heartbeat.release(job_id, jobs_done=heartbeat.beat.jobs_done + 1, last_job_at=utcnow())

    return Pipeline(speak, hand_on, batch=batch, name="ttsq")


def stop() -> None:
    global _current
    if _current is not None:
        _current.pipeline.close()  # the job on the engine finishes and is handed on
        if _current.synthesizer.ends is not None:
            _current.synthesizer.ends.stop()
        _current.heartbeat.stop()
        _current = None
