"""Every status change of a job after its creation, one method each, each through
`StoreBase.change`: claim, progress, synthesised, upload lease, succeed, fail, requeue, cancel,
delete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import cast

from redis.client import Pipeline

from common import keys, metrics
from common.errors import Conflict, NotFound
from common.jobs.base import Message, StoreBase, score
from common.jobs.eta import note_synthesis_time
from common.jobs.order import queued_score
from common.schemas.jobs import AudioInfo, ErrorInfo, JobRecord, JobStatus, Progress, Stage
from common.webhooks import emit_job_event


class ClaimResult(StrEnum):
    #: The caller now holds the job and must synthesise it.
    run = "run"
    #: Nothing to do: the job ended, vanished, or is held by a live worker.
    skip = "skip"
    #: The job was started too often and is now failed.
    exhausted = "exhausted"


@dataclass
class Claim:
    result: ClaimResult
    job: JobRecord | None


class Transitions(StoreBase):
    """A job's moves from state to state."""

    def set_cache_key(self, job_id: str, cache_key: str) -> None:
        """Note the result cache's key on a queued job (`common/resultcache.py`)."""

        def change(job: JobRecord, pipe: Pipeline) -> None:
            job.cache_key = cache_key

        self.change(job_id, change)

    def succeed_from_cache(
        self, job_id: str, audio: AudioInfo, warnings: list[str], *, instance: str | None = None
    ) -> JobRecord | None:
        """End a job with a copy of an earlier job's audio, no engine call: a queued job (at
        submission) or, with `instance`, one that synthesis worker holds before its engine
        runs. None when it is no longer so (canceled, taken by a worker or from it)."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            now = self.clock()
            if instance is None:
                if job.status != JobStatus.queued:
                    return False
                job.started_at, job.metrics.queue_s = now, 0.0
            elif (job.status, job.stage, job.worker) != (
                JobStatus.running,
                Stage.synthesizing,
                instance,
            ):
                return False
            job.audio, job.warnings, job.cached = audio, warnings, True
            job.metrics.gpu_s = job.metrics.gpu_s or 0.0
            self.end(job, pipe, JobStatus.succeeded, now)
            return True

        ok, job = self.change(job_id, change)
        return job if ok else None

    def mark_published(self, job_id: str) -> None:
        """Take a job out of the outbox: its message is in the broker."""
        self.redis.zrem(keys.UNPUBLISHED, job_id)

    def claim(
        self, job_id: str, instance: str, *, is_alive: Callable[[str], bool], max_attempts: int
    ) -> Claim:
        """Take a job for synthesis, or say why not. Safe against duplicate deliveries."""

        def change(job: JobRecord, pipe: Pipeline) -> ClaimResult:
            if job.status.terminal or job.stage == Stage.uploading:
                return ClaimResult.skip
            held = job.status == JobStatus.running and job.worker not in (None, instance)
            if held and is_alive(str(job.worker)):
                return ClaimResult.skip
            now = self.clock()
            if job.attempts >= max_attempts:
                job.error = ErrorInfo(
                    code="attempts_exhausted",
                    message=f"synthesis was started {job.attempts} times and never finished "
                    "(worker crash, restart or repeated engine error); giving up",
                    retryable=True,
                )
                self.end(job, pipe, JobStatus.failed, now)
                return ClaimResult.exhausted
            job.status, job.stage, job.worker = JobStatus.running, Stage.synthesizing, instance
            job.progress = None  # a dead worker's, when taking its job over
            job.attempts += 1
            job.started_at = job.started_at or now
            job.stage_at = now
            job.metrics.queue_s = (now - job.created_at).total_seconds()
            pipe.zrem(keys.QUEUED, job.id)
            pipe.zrem(keys.UNPUBLISHED, job.id)  # a message reached a worker: nothing to resend
            pipe.zadd(keys.RUNNING, {job.id: score(now)})
            if job.attempts == 1:
                emit_job_event(pipe, job, "job.started", now, self.ttl_s)
            metrics.on_claim(pipe, job)
            return ClaimResult.run

        result, job = self.change(job_id, change)
        return Claim(result if job and result else ClaimResult.skip, job)

    def mark_synthesized(
        self,
        job_id: str,
        instance: str,
        wav: bytes,
        *,
        synth_s: float,
        duration_s: float,
        warnings: list[str],
        upload_lease_s: float = 20.0,
        message: Message | None = None,
        uploading_here: bool = False,
    ) -> bool:
        """Hand the audio to the uploader. False when the job was canceled or taken over.

        With `message` (`queue.upload_message`) the upload task is pushed in the same
        transaction. The upload task must start within `upload_lease_s`, or the sweeper sends
        another. `uploading_here`: `instance` makes the first attempt itself (`uploader`).
        """

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.running or job.stage != Stage.synthesizing:
                return False
            if job.worker != instance:
                return False
            now = self.clock()
            job.stage, job.stage_at = Stage.uploading, now
            job.lease_until = now + timedelta(seconds=upload_lease_s)
            job.uploader = instance if uploading_here else None
            job.metrics.synth_s = round(synth_s, 4)
            job.metrics.gpu_s = round((job.metrics.gpu_s or 0.0) + synth_s, 4)
            job.metrics.rtf = round(synth_s / duration_s, 4) if duration_s > 0 else None
            job.warnings = warnings
            pipe.set(keys.job_audio_handoff(job.id), wav, ex=int(self.job_ttl.total_seconds()))
            if message is not None:
                pipe.lpush(*message(job))
            note_synthesis_time(pipe, synth_s)
            metrics.on_synthesized(pipe, synth_s, duration_s)
            return True

        return bool(self.change(job_id, change)[0])

    def note_progress(self, job_id: str, instance: str, done: int, total: int) -> bool:
        """Record how far the engine is (segments done of total) on a job `instance` is
        synthesising; never a status or stage change. False when it no longer is."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if (job.status, job.stage, job.worker) != (
                JobStatus.running,
                Stage.synthesizing,
                instance,
            ):
                return False
            job.progress = Progress(done=done, total=total)
            return True

        return bool(self.change(job_id, change)[0])

    def touch_upload(self, job_id: str, lease_s: float = 60.0) -> JobRecord | None:
        """Hold the upload for `lease_s` more seconds (an attempt, or the wait before the next);
        None when the job no longer waits for an upload."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.running or job.stage != Stage.uploading:
                return False
            job.lease_until = self.clock() + timedelta(seconds=lease_s)
            job.uploader = None  # the I/O worker's from now: its lease bounds it
            return True

        ok, job = self.change(job_id, change)
        return job if ok else None

    def take_over_upload(self, job_id: str, seen: datetime | None, lease_s: float) -> bool:
        """The sweeper's claim on a stalled upload: True only if the lease it saw expire is
        still the job's (no upload renewed it, no other sweeper took it over meanwhile)."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.running or job.stage != Stage.uploading:
                return False
            if job.lease_until != seen:
                return False
            job.lease_until = self.clock() + timedelta(seconds=lease_s)
            job.uploader = None
            return True

        return bool(self.change(job_id, change)[0])

    def handoff_audio(self, job_id: str) -> bytes | None:
        return cast(bytes | None, self.redis.get(keys.job_audio_handoff(job_id)))

    def mark_succeeded(
        self, job_id: str, audio: AudioInfo, *, warnings: list[str] | None = None
    ) -> JobRecord | None:
        """End the upload: the succeeded record, or None when the job no longer waited for
        it (canceled, or ended by another run)."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.running or job.stage != Stage.uploading:
                return False
            job.audio = audio
            job.warnings = [*job.warnings, *(warnings or [])]
            now = self.clock()
            metrics.on_succeeded(pipe, job, now)
            self.end(job, pipe, JobStatus.succeeded, now)
            return True

        ok, job = self.change(job_id, change)
        return job if ok else None

    def fail(self, job_id: str, code: str, message: str, *, retryable: bool) -> bool:
        """End the job as failed; `retryable`: whether sending it again may succeed."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status.terminal:
                return False
            job.error = ErrorInfo(code=code, message=message, retryable=retryable)
            self.end(job, pipe, JobStatus.failed, self.clock())
            return True

        return bool(self.change(job_id, change)[0])

    def requeue(
        self,
        job_id: str,
        *,
        only_from: str | None = None,
        stage: Stage = Stage.synthesizing,
        delay_s: float = 0.0,
    ) -> bool:
        """Put a running job back in the queue (transient error, its worker died, audio lost).

        The job enters the outbox in the same transaction, due in `delay_s`: whoever requeued
        it publishes it now (and calls `mark_published`), or the sweeper does once it is due,
        so a crash or a Redis error between the two never leaves a queued job with no message.
        With `only_from`, only if that instance still holds it, so two sweepers cannot both
        requeue it.
        """

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.running or job.stage != stage:
                return False
            if only_from is not None and job.worker != only_from:
                return False
            now = self.clock()
            job.status, job.stage, job.worker = JobStatus.queued, None, None
            job.stage_at, job.lease_until = None, None
            pipe.zrem(keys.RUNNING, job.id)
            pipe.zadd(keys.QUEUED, {job.id: queued_score(job)})
            pipe.zadd(keys.UNPUBLISHED, {job.id: score(now + timedelta(seconds=delay_s))})
            return True

        return bool(self.change(job_id, change)[0])

    def cancel(self, job_id: str, owner: str) -> JobRecord:
        self.get_owned(job_id, owner)

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status.terminal:
                return False
            self.end(job, pipe, JobStatus.canceled, self.clock())
            return True

        ok, job = self.change(job_id, change)
        if job is None:
            raise NotFound(f"no job with id {job_id}", code="job_not_found")
        if not ok:
            raise Conflict(f"job {job_id} already ended as {job.status}", code="job_ended")
        return job

    def delete(self, job_id: str, owner: str) -> None:
        """Remove an ended job's record and indexes (its audio is the caller's to delete)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.job(job_id), keys.job_audio_handoff(job_id))
        for index in (keys.owner_jobs(owner), keys.EXPIRY, keys.QUEUED, keys.RUNNING):
            pipe.zrem(index, job_id)
        pipe.zrem(keys.UNPUBLISHED, job_id)
        pipe.execute()
