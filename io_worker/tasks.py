"""The I/O worker's Celery tasks, thin shells over plain functions: an upload to storage and
one webhook delivery. `ttsq io` runs them on a thread pool; the sweeper and the webhook pump
start with the worker (`worker_ready`) on threads of their own (`io_worker/runtime.py`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown

from common import keys
from common.broker import make_celery, publish_job_id
from common.settings import Settings
from common.worker.delivery import UploadPolicy, run_upload
from common.worker.lifecycle import REDIS_DOWN, TASK_REDIS_RETRY, held_or_requeue
from io_worker import runtime
from io_worker.merge import run_merge
from io_worker.webhooks import run_delivery

log = logging.getLogger(__name__)

settings = Settings()
app = make_celery(settings)

#: An upload's own storage retries count against the task's retries: no limit here, the
#: upload policy ends them (`TTS_UPLOAD_MAX_ATTEMPTS`).
_UPLOAD_REDIS_RETRY = dataclasses.replace(TASK_REDIS_RETRY, attempts=None)


def _runtime() -> runtime.Runtime:
    return held_or_requeue(runtime.current)


@app.task(name=keys.TASK_UPLOAD, bind=True, **_UPLOAD_REDIS_RETRY.celery_options(REDIS_DOWN))
def upload(self: Task, job_id: str) -> None:
    rt = _runtime()
    outcome = run_upload(
        job_id,
        store=rt.parts.store,
        storage=rt.parts.storage,
        attempt=self.request.retries,
        policy=UploadPolicy.of(rt.settings),
    )
    if outcome.resynthesize:
        publish_job_id(app, rt.parts.store, job_id)
        rt.parts.store.mark_published(job_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)


@app.task(name=keys.TASK_DELIVER_WEBHOOK, bind=True, **TASK_REDIS_RETRY.celery_options(REDIS_DOWN))
def deliver_webhook(self: Task, delivery_id: str) -> None:
    rt = _runtime()
    run_delivery(delivery_id, client=rt.parts.redis, settings=rt.settings, storage=rt.parts.storage)


@app.task(name=keys.TASK_MERGE_TRACKS, bind=True, **TASK_REDIS_RETRY.celery_options(REDIS_DOWN))
def merge_tracks(self: Task, job_id: str) -> None:
    rt = _runtime()
    run_merge(job_id, client=rt.parts.redis, store=rt.parts.store, storage=rt.parts.storage)


@worker_ready.connect
def _start(**_: Any) -> None:
    runtime.start(settings, app)


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    runtime.stop()
