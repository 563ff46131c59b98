"""The Celery tasks: thin shells that build nothing and call the plain functions.

Start a worker with `ttsq worker` (synthesis: prefork, one process, one job at a time) or
`ttsq io` (uploads and the sweeper: a thread pool). The API sends tasks by name.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.signals import (
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from kombu.exceptions import OperationalError

from common import keys
from common.broker import make_celery
from common.jobs.order import publish_job_id
from common.settings import Settings
from common.worker.delivery import UploadPolicy, run_upload
from gpu_worker import recycle, runtime
from gpu_worker.synthesis import Prepared
from io_worker.webhooks import run_delivery

log = logging.getLogger(__name__)

settings = Settings()
app = make_celery(settings)

#: Redis or the broker failed mid-task: the task is sent again (a few times, backing off). If
#: that fails too, the job is not lost: the sweeper finds it (outbox, heartbeat, lease).
REDIS_DOWN = (redis.RedisError, OperationalError)
_RETRY = {"autoretry_for": REDIS_DOWN, "retry_backoff": 1, "retry_backoff_max": 30}


def _runtime() -> runtime.Runtime:
    try:
        return runtime.current()
    except RuntimeError:
        # This process failed to start and is being stopped: give the message back unrun.
        raise Reject("this worker process has no runtime", requeue=True) from None


@app.task(name=keys.TASK_SYNTHESIZE, bind=True, max_retries=5, **_RETRY)
def synthesize(self: Task, job_id: str) -> None:
    """Claim and prepare the job, then give it to the engine's thread; returns (and the
    message is acked) once the engine has taken it (`gpu_worker/pipeline.py`)."""
    rt = _runtime()
    rt.heartbeat.hold(job_id)
    handed = False
    try:
        synthesizer, pipeline = rt.synthesis()
        prepared = synthesizer.prepare(job_id)
        if isinstance(prepared, Prepared):
            pipeline.run(prepared)
            handed = True
    finally:
        if not handed:
            rt.heartbeat.release(job_id)
    # The engine has just finished the job before this one: above the mark, this process is
    # replaced once this task returns, after the job in hand (`recycle.py`, `pipeline.py`).
    recycle.check_gpu_memory(rt.engine_memory_mb(), rt.settings.recycle_gpu_memory_mb)


@app.task(name=keys.TASK_UPLOAD, bind=True, max_retries=None, **_RETRY)
def upload(self: Task, job_id: str) -> None:
    rt = _runtime()
    outcome = run_upload(
        job_id,
        store=rt.store,
        storage=rt.storage,
        attempt=self.request.retries,
        policy=UploadPolicy.of(rt.settings),
    )
    if outcome.resynthesize:
        publish_job_id(app, rt.store, job_id)
        rt.store.mark_published(job_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)


@app.task(name=keys.TASK_DELIVER_WEBHOOK, bind=True, max_retries=5, **_RETRY)
def deliver_webhook(self: Task, delivery_id: str) -> None:
    rt = _runtime()
    run_delivery(delivery_id, client=rt.redis, settings=rt.settings, storage=rt.storage)


def _role() -> str:
    return os.environ.get(runtime.ROLE_ENV, "synth")


@worker_process_init.connect
def _start_synth_child(**_: Any) -> None:
    if _role() == "synth":
        recycle.install()
        runtime.start_synth(settings, app)


@worker_process_shutdown.connect
def _stop_synth_child(**_: Any) -> None:
    if _role() == "synth":
        runtime.stop()


@worker_ready.connect
def _start_io(**_: Any) -> None:
    if _role() == "io":
        runtime.start_io(settings, app)


@worker_shutdown.connect
def _stop_io(**_: Any) -> None:
    if _role() == "io":
        runtime.stop()
