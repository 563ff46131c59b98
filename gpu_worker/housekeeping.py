"""The sweeper: what keeps an accepted job from being lost when a process dies at a bad moment.

Run every few seconds by the I/O worker (any number of them; every step is one transaction).
- A job whose queue message may never have been sent (the API died between storing the job and
  publishing it) is published again.
- A job held by a worker whose heartbeat has expired goes back to the queue.
- A job whose upload stalled (its upload task was lost) gets a new upload task.
- An ended job past its expiry is removed with its audio; nothing else is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.errors import StorageUnavailable
from common.jobstore import JobStore
from common.schemas import Stage
from common.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    republished: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    reuploaded: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)


def sweep(
    *,
    store: JobStore,
    storage: Storage,
    is_alive: Callable[[str], bool],
    publish_synthesis: Callable[[str], None],
    publish_upload: Callable[[str], None],
    publish_grace_s: float,
    upload_stall_s: float,
) -> SweepReport:
    report = SweepReport()
    now = store.clock()
    for job_id in store.unpublished_before(now - timedelta(seconds=publish_grace_s)):
        publish_synthesis(job_id)
        store.mark_published(job_id)
        report.republished.append(job_id)
    for job_id in store.running_ids():
        job = store.get(job_id)
        if job is None:
            continue
        if job.stage == Stage.synthesizing and job.worker and not is_alive(job.worker):
            if store.requeue(job_id, only_from=job.worker):
                log.warning("[job %s] worker %s is gone; job requeued", job_id, job.worker)
                publish_synthesis(job_id)
                report.requeued.append(job_id)
        elif job.stage == Stage.uploading and _older(job.stage_at, now, upload_stall_s):
            log.warning("[job %s] upload stalled; sending it again", job_id)
            store.touch_upload(job_id)
            publish_upload(job_id)
            report.reuploaded.append(job_id)
    for job_id in store.expired_before(now):
        job = store.get(job_id)
        if job is not None and job.audio is not None:
            try:
                storage.delete(job.audio.key)
            except StorageUnavailable as exc:
                log.warning("[job %s] expiry postponed: %s", job_id, exc.message)
                continue
        if job is not None:
            store.delete(job_id, job.owner)
        report.expired.append(job_id)
    return report


def _older(at: datetime | None, now: datetime, seconds: float) -> bool:
    return at is not None and (now - at).total_seconds() > seconds
