"""What a worker process holds for its whole life: settings, Redis, store, storage, engine.

The synthesis worker builds its engine in the process that runs the jobs (the prefork child),
never in a parent that forks, so CUDA is initialised once, where it is used.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from common.broker import connect_redis, publish_upload, publish_webhook, upload_message
from common.errors import TtsqError
from common.jobs.batches import BatchStore
from common.jobs.order import publish_job_id
from common.jobs.store import JobStore, utcnow
from common.netguard import parse_cidrs
from common.resultcache import ResultCache
from common.schemas.jobs import WorkerHeartbeat
from common.settings import Settings
from common.storage import Storage, make_storage, storage_problem
from common.voicestore import VoiceStore
from common.worker.delivery import UploadHere, UploadPolicy
from common.worker.heartbeat import Every, Heartbeat
from common.worker.registry import is_alive, new_instance_name
from gpu_worker.engines import load_engine
from gpu_worker.engines.base import Engine
from gpu_worker.pipeline import Pipeline
from gpu_worker.synthesis import Next, Prepared, Spoken, Synthesizer
from gpu_worker.uploaded_voices import UploadedVoices
from gpu_worker.url_voices import UrlVoices
from gpu_worker.voices import VoiceCache
from io_worker.sweeper import Sweeper
from io_worker.webhooks import Pump

log = logging.getLogger(__name__)

ROLE_ENV = "TTSQ_WORKER_ROLE"
#: How long a stopping I/O worker lets a sweep in progress finish; past it the lock is left
#: for the next sweeper to take over once this worker's heartbeat is gone.
SWEEP_STOP_WAIT_S = 10.0
STOP_REASON_ENV = "TTSQ_STOP_REASON_FILE"


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    storage: Storage
    instance: str
    heartbeat: Heartbeat
    engine: Engine | None = None
    sweeper: Every | None = None
    webhooks: Every | None = None
    #: The synthesis worker's: the steps of a job, and the threads that run them.
    synthesizer: Synthesizer | None = None
    pipeline: Pipeline[Prepared, Spoken] | None = None

    def is_alive(self, instance: str) -> bool:
        return is_alive(self.redis, instance)

    def engine_memory_mb(self) -> float:
        probe = getattr(self.engine, "memory_mb", None)
        return float(probe()) if probe is not None else 0.0

    def synthesis(self) -> tuple[Synthesizer, Pipeline[Prepared, Spoken]]:
        if self.synthesizer is None or self.pipeline is None:
            raise RuntimeError("this worker has no engine: it is not a synthesis worker")
        return self.synthesizer, self.pipeline


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not started")
    return _current


def stop_worker(reason: str) -> None:
    """This process cannot do its work: stop the whole Celery worker, exiting non-zero.

    Celery logs and swallows exceptions raised in its start-up signals, and its exit code after
    a shutdown requested by a signal is 0. So the reason goes to the file `ttsq worker`/`io`
    named in STOP_REASON_ENV (it exits 1 with it), and SIGTERM stops the worker: a message it
    fetched meanwhile goes back to the queue unrun, and the supervisor restarts it with back-off.
    """
    log.critical("cannot work, stopping the worker: %s", reason)
    path = os.environ.get(STOP_REASON_ENV)
    if path:
        with open(path, "a") as f:
            f.write(reason + "\n")
    main = os.getppid() if os.environ.get(ROLE_ENV, "synth") == "synth" else os.getpid()
    os.kill(main, signal.SIGTERM)


def describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, TtsqError) else f"{type(exc).__name__}: {exc}"


def _base(settings: Settings, kind: str) -> tuple[redis.Redis, JobStore, Storage, WorkerHeartbeat]:
    client = connect_redis(settings)
    store = JobStore(
        client, job_ttl_s=settings.job_ttl_s, clock=utcnow, publish_grace_s=settings.stuck_grace_s
    )
    beat = WorkerHeartbeat(
        instance=new_instance_name(kind),
        kind=kind,  # type: ignore[arg-type]
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started_at=utcnow(),
    )
    return client, store, make_storage(settings), beat


def start_synth(settings: Settings, app: Celery) -> Runtime:
    """Load and warm the engine, then start the heartbeat that says so and the pipeline."""
    global _current
    client, store, storage, beat = _base(settings, "synth")
    heartbeat = Heartbeat(
        client, beat, interval_s=settings.heartbeat_interval_s, ttl_s=settings.heartbeat_ttl_s
    )
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
        stop_worker(f"engine {settings.backend} failed to start: {describe(exc)}")
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
    _current = Runtime(settings, client, store, storage, beat.instance, heartbeat, engine)
    _current.synthesizer = Synthesizer(
        store=store,
        engine=engine,
        instance=beat.instance,
        is_alive=_current.is_alive,
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
    )
    _current.pipeline = synthesis_pipeline(_current, _current.synthesizer, app)
    _current.synthesizer.engine_idle = _current.pipeline.idle
    return _current


def synthesis_pipeline(
    rt: Runtime, synthesizer: Synthesizer, app: Celery
) -> Pipeline[Prepared, Spoken]:
    """The engine's thread and the finisher's (`gpu_worker/pipeline.py`) for this process."""

    def speak(prepared: Prepared) -> Spoken:
        rt.heartbeat.note(current_job=prepared.job.id)  # in memory: no Redis between jobs
        spoken = synthesizer.speak_job(prepared)
        rt.heartbeat.note(current_job=None)
        return spoken

    def hand_on(prepared: Prepared, spoken: Spoken) -> None:
        job_id = prepared.job.id
        try:
            outcome = _patiently(lambda: synthesizer.finish(prepared, spoken))
            if outcome.next == Next.upload:  # not sent with the hand-off (`Next.uploading`)
                # Lost (an outage past the retries): the sweeper resends it once the lease passes.
                _patiently(lambda: publish_upload(app, job_id))
        finally:
            rt.heartbeat.release(
                job_id, jobs_done=rt.heartbeat.beat.jobs_done + 1, last_job_at=utcnow()
            )

    return Pipeline(speak, hand_on, name="ttsq")


T = TypeVar("T")


def _patiently(step: Callable[[], T], tries: int = 6) -> T:
    """Run a Redis/broker write, trying again through a short outage (0.5 s, doubling)."""
    for attempt in range(tries):
        try:
            return step()
        except (redis.RedisError, OperationalError) as exc:
            if attempt == tries - 1:
                raise
            log.warning("Redis unavailable (%s); trying again", type(exc).__name__)
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def start_io(settings: Settings, app: Celery) -> Runtime:
    """Check storage, then start the I/O worker's heartbeat and, apart from it, the sweeper."""
    global _current
    client, store, storage, beat = _base(settings, "io")
    problem = storage_problem(settings)
    if problem is not None:
        stop_worker(f"storage is not usable: {problem}")
        raise RuntimeError(problem)
    beat.ready = True
    sweeper = Sweeper(
        store=store,
        storage=storage,
        publish_synthesis=partial(publish_job_id, app, store),
        publish_upload=partial(publish_upload, app),
        grace_s=settings.stuck_grace_s,
        upload_lease_s=settings.upload_lease_s,
        instance=beat.instance,
    )
    heartbeat = Heartbeat(
        client, beat, interval_s=settings.heartbeat_interval_s, ttl_s=settings.heartbeat_ttl_s
    )
    heartbeat.start()
    # Its own thread: a slow sweep (S3 deletes on expiry) never delays the heartbeat.
    sweeping = Every(settings.sweep_interval_s, sweeper.run, name="ttsq-sweeper")
    sweeping.start()
    pump = Pump(client, BatchStore(store), settings, partial(publish_webhook, app))
    webhooks = Every(settings.webhook_poll_s, pump.run, name="ttsq-webhooks")
    webhooks.start()
    _current = Runtime(settings, client, store, storage, beat.instance, heartbeat, None, sweeping)
    _current.webhooks = webhooks
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        if _current.pipeline is not None:
            _current.pipeline.close()  # the job on the engine finishes and is handed on
        if _current.sweeper is not None:
            _current.sweeper.stop()
            # A sweep in progress ends and gives its lock back before the heartbeat goes.
            _current.sweeper.join(timeout=SWEEP_STOP_WAIT_S)
        if _current.webhooks is not None:
            _current.webhooks.stop()
        _current.heartbeat.stop()
        _current = None
