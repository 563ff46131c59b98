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
from dataclasses import dataclass
from functools import partial

import redis
from celery import Celery

from common.errors import EngineLoadError
from common.jobstore import JobStore, utcnow
from common.queue import connect_redis, publish_synthesis, publish_upload
from common.schemas import WorkerHeartbeat
from common.settings import Settings
from common.storage import S3Storage, Storage, make_storage
from common.workers import is_alive, new_instance_name
from gpu_worker.engines import load_engine
from gpu_worker.engines.base import Engine
from gpu_worker.heartbeat import Heartbeat
from gpu_worker.housekeeping import sweep

log = logging.getLogger(__name__)

ROLE_ENV = "TTSQ_WORKER_ROLE"


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    storage: Storage
    instance: str
    heartbeat: Heartbeat
    engine: Engine | None = None

    def is_alive(self, instance: str) -> bool:
        return is_alive(self.redis, instance)

    def engine_memory_mb(self) -> float:
        probe = getattr(self.engine, "memory_mb", None)
        return float(probe()) if probe is not None else 0.0

    def require_engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("this worker has no engine: it is not a synthesis worker")
        return self.engine


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not started")
    return _current


def _base(settings: Settings, kind: str) -> tuple[redis.Redis, JobStore, Storage, WorkerHeartbeat]:
    client = connect_redis(settings)
    store = JobStore(client, job_ttl_s=settings.job_ttl_s, clock=utcnow)
    beat = WorkerHeartbeat(
        instance=new_instance_name(kind),
        kind=kind,  # type: ignore[arg-type]
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started_at=utcnow(),
    )
    return client, store, make_storage(settings), beat


def start_synth(settings: Settings) -> Runtime:
    """Load and warm the engine, then start the heartbeat that says so."""
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
    except EngineLoadError as exc:
        log.critical("engine %s failed to load: %s", settings.backend, exc.message)
        heartbeat.stop()
        os.kill(os.getppid(), signal.SIGTERM)  # stop the worker rather than respawn forever
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
    _current = Runtime(settings, client, store, storage, beat.instance, heartbeat, engine)
    return _current


def start_io(settings: Settings, app: Celery) -> Runtime:
    """Start the I/O worker's heartbeat, which also runs the sweeper."""
    global _current
    client, store, storage, beat = _base(settings, "io")
    if isinstance(storage, S3Storage):
        storage.ensure_bucket()
    beat.ready = True
    run_sweep = partial(
        sweep,
        store=store,
        storage=storage,
        is_alive=partial(is_alive, client),
        publish_synthesis=partial(publish_synthesis, app),
        publish_upload=partial(publish_upload, app),
        publish_grace_s=settings.heartbeat_ttl_s,
        upload_stall_s=settings.upload_backoff_max_s + settings.heartbeat_ttl_s,
    )
    heartbeat = Heartbeat(
        client,
        beat,
        interval_s=settings.heartbeat_interval_s,
        ttl_s=settings.heartbeat_ttl_s,
        also=run_sweep,
        also_every_s=settings.sweep_interval_s,
    )
    heartbeat.start()
    _current = Runtime(settings, client, store, storage, beat.instance, heartbeat)
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.heartbeat.stop()
        _current = None
