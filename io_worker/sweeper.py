"""The sweeper: what keeps an accepted job from being stuck when a process or Redis fails.

Run every `TTS_SWEEP_INTERVAL_S` by each I/O worker, in its own thread; a Redis lock lets one
sweeper at a time work, so a stuck job is sent again exactly once. The lock names the worker
that holds it and ends with that worker's heartbeat: a sweeper killed mid-sweep (a shutdown,
a SIGKILL) never keeps the others from sweeping for the lock's whole TTL. Each job it finds is
logged with its id and counted (`keys.SWEEP_COUNTS`). It looks for:

- the outbox's due jobs: stored but not published (the API died, or publishing failed), a
  retry whose delay has passed, or a job found with no message: their message is sent;
- a job held by a worker whose heartbeat expired, or by a live worker whose heartbeat says it is
  working on something else (its task died after the claim): back to the queue;
- an upload whose lease passed with no attempt renewing it (its task was lost), or whose
  synthesis worker, uploading itself, died: sent again;
- a queued job with no message in the broker, seen so twice at least `grace_s` apart (what a
  Redis killed mid-write can forget, or a message that died unacked with its worker): into
  the outbox;
- ended jobs past their expiry, with their audio, and audio objects whose delete failed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

import redis
from redis.client import Pipeline

from common import keys
from common.broker import broker_job_ids
from common.errors import StorageUnavailable
from common.jobs.store import JobStore
from common.resultcache import ResultCache
from common.schemas.jobs import JobRecord, Stage
from common.storage import Storage
from common.worker.registry import current_jobs, new_instance_name

log = logging.getLogger(__name__)

#: Expired jobs removed per sweep, so one sweep stays short and under the lock.
EXPIRE_BATCH = 200
#: The lock outlives any sweep that is not stuck itself.
LOCK_TTL_S = 120


@dataclass
class SweepReport:
    republished: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    rescued: list[str] = field(default_factory=list)
    reuploaded: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in vars(self).items() if ids}


@dataclass
class Sweeper:
    store: JobStore
    storage: Storage
    publish_synthesis: Callable[[str], None]
    publish_upload: Callable[[str], None]
    grace_s: float
    upload_lease_s: float
    #: instance -> the jobs its heartbeat says it holds, for every live worker.
    heartbeats: Callable[[], dict[str, set[str]]] | None = None
    #: Ids of jobs with a live synthesis message in the broker: waiting, or delivered within
    #: `grace_s` (a queued job's message delivered before that died with its consumer).
    messages: Callable[[], set[str]] | None = None
    #: The heartbeat name of the worker this sweeper runs in: the lock's holder.
    instance: str = field(default_factory=lambda: new_instance_name("sweeper"))
    _last_orphan_check: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        client = self.store.redis
        self.heartbeats = self.heartbeats or (lambda: current_jobs(client))
        self.messages = self.messages or (
            lambda: broker_job_ids(client, keys.SYNTH_QUEUE, delivered_within_s=self.grace_s)
        )

    def run(self) -> SweepReport | None:
        """Sweep once if no other sweeper is sweeping now; None if one is."""
        if not self._lock():
            return None
        try:
            report = self.sweep()
        finally:
            with contextlib.suppress(redis.RedisError):
                self._unlock()
        counts = report.counts()
        if counts:
            pipe = self.store.redis.pipeline()
            for name, n in counts.items():
                pipe.hincrby(keys.SWEEP_COUNTS, name, n)
            pipe.execute()
        return report

    def _lock(self) -> bool:
        """Take the sweep lock: free, or held by a worker whose heartbeat has expired."""
        client = self.store.redis
        if client.set(keys.SWEEP_LOCK, self.instance, nx=True, ex=LOCK_TTL_S):
            return True
        assert self.heartbeats is not None
        live = self.heartbeats()
        left_by: list[bytes | None] = []

        def take(pipe: Pipeline) -> None:
            left_by.clear()
            holder = cast(bytes | None, pipe.get(keys.SWEEP_LOCK))
            if holder is not None and holder.decode() in live:
                return
            pipe.multi()
            pipe.set(keys.SWEEP_LOCK, self.instance, ex=LOCK_TTL_S)
            left_by.append(holder)

        client.transaction(take, keys.SWEEP_LOCK)
        if not left_by:
            return False
        log.warning("sweep lock of %r taken over: its worker is gone", left_by[0])
        return True

    def _unlock(self) -> None:
        def release(pipe: Pipeline) -> None:
            if pipe.get(keys.SWEEP_LOCK) == self.instance.encode():
                pipe.multi()
                pipe.delete(keys.SWEEP_LOCK)

        self.store.redis.transaction(release, keys.SWEEP_LOCK)

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self.store.clock()
        self._running(now, report)
        if time.monotonic() - self._last_orphan_check >= self.grace_s / 2:
            self._orphans(now, report)
            self._last_orphan_check = time.monotonic()
        for job_id in self.store.outbox_due(now):
            self.publish_synthesis(job_id)
            self.store.mark_published(job_id)
            report.republished.append(job_id)
        self._expire(now, report)
        return report

    def _running(self, now: datetime, report: SweepReport) -> None:
        assert self.heartbeats is not None
        working_on = self.heartbeats()
        for job_id in self.store.running_ids():
            job = self.store.get(job_id)
            if job is None or job.worker is None:
                continue
            if job.stage == Stage.uploading:
                # A synthesis worker's own attempt ends with its heartbeat: no lease to wait out.
                died = job.uploader is not None and job.uploader not in working_on
                if (died or _lease_passed(job, now, self.upload_lease_s)) and (
                    self.store.take_over_upload(job_id, job.lease_until, self.upload_lease_s)
                ):
                    why = f"worker {job.uploader} is gone" if died else "its lease passed"
                    log.warning("[job %s] upload stalled (%s); sending it again", job_id, why)
                    self.publish_upload(job_id)
                    report.reuploaded.append(job_id)
                continue
            if job.worker not in working_on:
                found, why = report.requeued, "is gone"
            elif job_id not in working_on[job.worker] and _older(job.stage_at, now, self.grace_s):
                found, why = report.rescued, "is alive but not working on it"
            else:
                continue
            if self.store.requeue(job_id, only_from=job.worker):  # the outbox sends it below
                log.warning("[job %s] worker %s %s; requeued", job_id, job.worker, why)
                found.append(job_id)

    def _orphans(self, now: datetime, report: SweepReport) -> None:
        """Queued jobs with no message, confirmed by two looks `grace_s` apart: a message in
        transit between kombu's list and its unacked hash is missed by one look, not two."""
        client = self.store.redis
        waiting = set(self.store.queued_ids()) - self.store.in_outbox()
        if not waiting:
            client.delete(keys.SWEEP_SUSPECTS)
            return
        assert self.messages is not None
        missing = waiting - self.messages()
        raw = cast(dict[bytes, bytes], client.hgetall(keys.SWEEP_SUSPECTS))
        seen = {k.decode(): float(v) for k, v in raw.items()}
        cleared = [job_id for job_id in seen if job_id not in missing]
        if cleared:
            client.hdel(keys.SWEEP_SUSPECTS, *cleared)
        for job_id in missing:
            first = seen.get(job_id)
            if first is None:
                client.hset(keys.SWEEP_SUSPECTS, job_id, now.timestamp())
            elif now.timestamp() - first >= self.grace_s:
                client.hdel(keys.SWEEP_SUSPECTS, job_id)
                if self.store.enter_outbox(job_id):
                    log.warning("[job %s] queued with no message; sending it again", job_id)
                    report.orphaned.append(job_id)

    def _expire(self, now: datetime, report: SweepReport) -> None:
        for job_id in self.store.expired_before(now)[:EXPIRE_BATCH]:
            job = self.store.get(job_id)
            if job is not None:
                ResultCache(self.store.redis, self.storage).forget(job)
            if job is not None and job.audio is not None:
                try:
                    self.storage.delete(job.audio.key)
                except StorageUnavailable as exc:
                    log.warning("[job %s] expiry postponed: %s", job_id, exc.message)
                    continue
            if job is not None:
                self.store.delete(job_id, job.owner)
            report.expired.append(job_id)
        for key in self.store.orphan_objects()[:EXPIRE_BATCH]:
            try:
                self.storage.delete(key)
            except StorageUnavailable:
                continue
            self.store.forget_orphan_object(key)


def _older(at: datetime | None, now: datetime, seconds: float) -> bool:
    return at is not None and (now - at).total_seconds() > seconds


def _lease_passed(job: JobRecord, now: datetime, lease_s: float) -> bool:
    lease = job.lease_until
    if lease is None and job.stage_at is not None:  # a record from before leases existed
        lease = job.stage_at + timedelta(seconds=lease_s)
    return lease is not None and now > lease
