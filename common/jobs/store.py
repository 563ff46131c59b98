"""The job store: job records in Redis and every status change, one function each.

Each change is an optimistic transaction (WATCH / MULTI): it reads the record, checks that the
change is allowed from the current status, and writes the record and the indexes together, so
a crash never leaves a job half-moved. Times come from an injected clock.

The API's hot paths (submit, read, wait) have `_async` twins on a `redis.asyncio` client, so
they run on the event loop with no thread-pool hop; they queue the same writes (`_add`).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from common import keys, metrics
from common.errors import Conflict, NotFound
from common.jobs.eta import mean_of, note_synthesis_time, recent_synthesis_s
from common.jobs.order import queued_score
from common.paging import Cursor, newest_first
from common.schemas.job_request import JobRequest
from common.schemas.jobs import AudioInfo, ErrorInfo, JobRecord, JobStatus, Progress, Stage
from common.webhooks import END_EVENTS, emit_job_event

Clock = Callable[[], datetime]
#: A new job's broker list and the message to push there (`priority.job_message`).
Message = Callable[[JobRecord], tuple[str, bytes]]
#: A position in an owner's listing: the last (creation score, job id) a page returned.
T = TypeVar("T")
log = logging.getLogger(__name__)


#: An earlier job a repeated request may join: one that has not failed or been canceled.
REUSABLE = {JobStatus.queued, JobStatus.running, JobStatus.succeeded}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return secrets.token_hex(16)


def _score(at: datetime) -> float:
    return at.timestamp()


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


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        job_ttl_s: int,
        aclient: aioredis.Redis | None = None,
        clock: Clock = utcnow,
        publish_grace_s: float = 20.0,
    ) -> None:
        self.redis = client
        #: The API's event-loop client, for the `_async` methods (None in the workers).
        self.aredis = aclient
        self.job_ttl = timedelta(seconds=job_ttl_s)
        self.clock = clock
        #: How long a job may sit in the outbox before the sweeper sends its message itself.
        self.publish_grace = timedelta(seconds=publish_grace_s)

    # -- reads -------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.get(keys.job(job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    def get_owned(self, job_id: str, owner: str) -> JobRecord:
        """The job if `owner` made it; another owner's job is indistinguishable from none."""
        return _owned(self.get(job_id), job_id, owner)

    async def get_owned_async(self, job_id: str, owner: str) -> JobRecord:
        raw = await self._async().get(keys.job(job_id))
        return _owned(JobRecord.model_validate_json(raw) if raw else None, job_id, owner)

    def queue_position(self, job_id: str) -> int | None:
        rank = cast(int | None, self.redis.zrank(keys.QUEUED, job_id))
        return int(rank) if rank is not None else None

    def queue_depth(self) -> int:
        return self.redis.zcard(keys.QUEUED)

    def list_owned(
        self, owner: str, *, status: JobStatus | None, after: Cursor | None, limit: int
    ) -> tuple[list[JobRecord], Cursor | None]:
        """Newest first, from just after `after`; returns the page and the next cursor."""

        def load(job_id: str) -> JobRecord | None:
            job = self.get(job_id)
            return job if job is not None and (status is None or job.status == status) else None

        return newest_first(self.redis, keys.owner_jobs(owner), after=after, limit=limit, load=load)

    # -- changes -----------------------------------------------------------------------

    def create(
        self,
        owner: str,
        request: JobRequest,
        *,
        message: Message | None = None,
        cache_key: str | None = None,
    ) -> JobRecord:
        """A new queued job, in one round trip (with `message`, published too: `_add`)."""
        pipe = self.redis.pipeline(transaction=True)
        job = self._add(owner, request, pipe, cache_key=cache_key, message=message)
        pipe.execute()
        return job

    async def create_placed(
        self,
        owner: str,
        request: JobRequest,
        *,
        message: Message | None = None,
        cache_key: str | None = None,
    ) -> tuple[JobRecord, int | None, float | None]:
        """`create` on the event loop, with the new job's `place_async` read in the same
        transaction: a submit is one round trip."""
        pipe = self._async().pipeline(transaction=True)
        job = self._add(owner, request, pipe, cache_key=cache_key, message=message)
        _place(pipe, job.id)
        *_, position, recent = await pipe.execute()
        return job, position, mean_of(recent)

    async def place_async(self, job_id: str) -> tuple[int | None, float | None]:
        """A queued job's `queue_position` and the mean engine seconds of recent syntheses
        (`common/jobs/eta.py`), in one round trip."""
        pipe = self._async().pipeline(transaction=False)
        _place(pipe, job_id)
        position, recent = await pipe.execute()
        return position, mean_of(recent)

    def create_once(
        self,
        owner: str,
        request: JobRequest,
        request_key: str,
        *,
        message: Message | None = None,
        cache_key: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """The job `request_key` names if it is queued, running or succeeded; else a new job,
        which the key then names (for the job's lifetime). Returns the job and whether it is
        new. Concurrent calls with one key make one job."""
        key = keys.request_job(owner, request_key)
        out: list[tuple[JobRecord, bool]] = []

        def txn(pipe: Pipeline) -> None:
            out.clear()
            known = cast(bytes | None, pipe.get(key))
            earlier = self.get(known.decode()) if known else None
            if earlier is not None and earlier.status in REUSABLE:
                out.append((earlier, False))
                return
            pipe.multi()
            job = self._add(owner, request, pipe, cache_key=cache_key, message=message)
            pipe.set(key, job.id, ex=int(self.job_ttl.total_seconds()))
            out.append((job, True))

        self.redis.transaction(txn, key)
        return out[0]

    def add_finished(
        self, job_id: str, owner: str, request: JobRequest, audio: AudioInfo
    ) -> JobRecord:
        """Record audio the API made itself (a drop-in batch's merged track, stored at
        `audio.key`) as a succeeded job: listed, read and expired like any other."""
        now = self.clock()
        job = JobRecord(id=job_id, owner=owner, request=request, created_at=now)
        job.status, job.started_at, job.finished_at = JobStatus.succeeded, now, now
        job.audio, job.expires_at = audio, now + self.job_ttl
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.job(job.id), job.model_dump_json())
        pipe.zadd(keys.owner_jobs(owner), {job.id: _score(now)})
        pipe.zadd(keys.EXPIRY, {job.id: _score(job.expires_at)})
        pipe.execute()
        return job

    def _add(
        self,
        owner: str,
        request: JobRequest,
        pipe: Pipeline | AsyncPipeline,
        *,
        batch_id: str | None = None,
        ref: str | None = None,
        cache_key: str | None = None,
        message: Message | None = None,
    ) -> JobRecord:
        """Queue a new job's writes on `pipe`. With `message` (the job's broker list and
        synthesis message, `priority.job_message`) the message is pushed in the same
        transaction: the job is published as it is stored and never enters the outbox, which
        is for jobs published after their transaction (`mark_published`)."""
        now = self.clock()
        job = JobRecord(id=new_job_id(), owner=owner, request=request, created_at=now)
        job.batch_id, job.ref, job.cache_key = batch_id, ref, cache_key
        pipe.set(keys.job(job.id), job.model_dump_json())
        pipe.zadd(keys.owner_jobs(owner), {job.id: _score(now)})
        pipe.zadd(keys.QUEUED, {job.id: queued_score(job)})
        if message is None:
            pipe.zadd(keys.UNPUBLISHED, {job.id: _score(now + self.publish_grace)})
        else:
            pipe.lpush(*message(job))
        log.info("[job %s] queued", job.id, extra={"job_id": job.id})
        return job

    def set_cache_key(self, job_id: str, cache_key: str) -> None:
        """Note the result cache's key on a queued job (`common/resultcache.py`)."""

        def change(job: JobRecord, pipe: Pipeline) -> None:
            job.cache_key = cache_key

        self._change(job_id, change)

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
            self._end(job, pipe, JobStatus.succeeded, now)
            return True

        ok, job = self._change(job_id, change)
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
                )
                self._end(job, pipe, JobStatus.failed, now)
                return ClaimResult.exhausted
            job.status, job.stage, job.worker = JobStatus.running, Stage.synthesizing, instance
            job.progress = None  # a dead worker's, when taking its job over
            job.attempts += 1
            job.started_at = job.started_at or now
            job.stage_at = now
            job.metrics.queue_s = (now - job.created_at).total_seconds()
            pipe.zrem(keys.QUEUED, job.id)
            pipe.zrem(keys.UNPUBLISHED, job.id)  # a message reached a worker: nothing to resend
            pipe.zadd(keys.RUNNING, {job.id: _score(now)})
            if job.attempts == 1:
                emit_job_event(pipe, job, "job.started", now, self._ttl_s)
            metrics.on_claim(pipe, job)
            return ClaimResult.run

        result, job = self._change(job_id, change)
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

        return bool(self._change(job_id, change)[0])

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

        return bool(self._change(job_id, change)[0])

    def touch_upload(self, job_id: str, lease_s: float = 60.0) -> JobRecord | None:
        """Hold the upload for `lease_s` more seconds (an attempt, or the wait before the next);
        None when the job no longer waits for an upload."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.running or job.stage != Stage.uploading:
                return False
            job.lease_until = self.clock() + timedelta(seconds=lease_s)
            job.uploader = None  # the I/O worker's from now: its lease bounds it
            return True

        ok, job = self._change(job_id, change)
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

        return bool(self._change(job_id, change)[0])

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
            self._end(job, pipe, JobStatus.succeeded, now)
            return True

        ok, job = self._change(job_id, change)
        return job if ok else None

    def fail(self, job_id: str, code: str, message: str) -> bool:
        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status.terminal:
                return False
            job.error = ErrorInfo(code=code, message=message)
            self._end(job, pipe, JobStatus.failed, self.clock())
            return True

        return bool(self._change(job_id, change)[0])

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
            pipe.zadd(keys.UNPUBLISHED, {job.id: _score(now + timedelta(seconds=delay_s))})
            return True

        return bool(self._change(job_id, change)[0])

    def cancel(self, job_id: str, owner: str) -> JobRecord:
        self.get_owned(job_id, owner)

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status.terminal:
                return False
            self._end(job, pipe, JobStatus.canceled, self.clock())
            return True

        ok, job = self._change(job_id, change)
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

    # -- the sweeper's views --------------------------------------------------------------

    def outbox_due(self, at: datetime) -> list[str]:
        """Jobs whose message the sweeper must send now."""
        return _ids(self.redis.zrangebyscore(keys.UNPUBLISHED, "-inf", _score(at)))

    def in_outbox(self) -> set[str]:
        return set(_ids(self.redis.zrange(keys.UNPUBLISHED, 0, -1)))

    def enter_outbox(self, job_id: str) -> bool:
        """Send a queued job's message again (the sweeper found it has none). One transaction:
        False when the job is no longer queued or already in the outbox."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.queued:
                return False
            pipe.zadd(keys.UNPUBLISHED, {job.id: _score(self.clock())}, nx=True)
            return True

        return bool(self._change(job_id, change)[0])

    def queued_ids(self) -> list[str]:
        return _ids(self.redis.zrange(keys.QUEUED, 0, -1))

    def running_ids(self) -> list[str]:
        return _ids(self.redis.zrange(keys.RUNNING, 0, -1))

    def note_orphan_object(self, key: str) -> None:
        """Remember a storage key whose delete failed, for the sweeper to delete later."""
        self.redis.hset(keys.ORPHAN_OBJECTS, key, _score(self.clock()))

    def orphan_objects(self) -> list[str]:
        return _ids(self.redis.hkeys(keys.ORPHAN_OBJECTS))

    def forget_orphan_object(self, key: str) -> None:
        self.redis.hdel(keys.ORPHAN_OBJECTS, key)

    def expired_before(self, at: datetime) -> list[str]:
        return _ids(self.redis.zrangebyscore(keys.EXPIRY, "-inf", _score(at)))

    # -- plumbing ----------------------------------------------------------------------

    def _end(self, job: JobRecord, pipe: Pipeline, status: JobStatus, now: datetime) -> None:
        job.status, job.stage, job.finished_at = status, None, now
        job.expires_at, job.lease_until = now + self.job_ttl, None
        pipe.zrem(keys.QUEUED, job.id)
        pipe.zrem(keys.RUNNING, job.id)
        pipe.zrem(keys.UNPUBLISHED, job.id)
        pipe.zadd(keys.EXPIRY, {job.id: _score(job.expires_at)})
        pipe.delete(keys.job_audio_handoff(job.id))
        emit_job_event(pipe, job, END_EVENTS[status], now, self._ttl_s)
        metrics.on_end(pipe, job)

    def _async(self) -> aioredis.Redis:
        if self.aredis is None:
            raise RuntimeError("this JobStore has no event-loop client (aclient)")
        return self.aredis

    @property
    def _ttl_s(self) -> int:
        return int(self.job_ttl.total_seconds())

    def _change(
        self, job_id: str, change: Callable[[JobRecord, Pipeline], T]
    ) -> tuple[T | None, JobRecord | None]:
        """Run `change` on the record inside WATCH/MULTI; write it back if `change` altered it."""
        key = keys.job(job_id)
        out: list[tuple[T | None, JobRecord | None]] = []
        before: list[tuple[JobStatus, Stage | None]] = []

        def txn(pipe: Pipeline) -> None:
            out.clear()
            raw = cast(bytes | None, pipe.get(key))
            if raw is None:
                out.append((None, None))
                return
            job = JobRecord.model_validate_json(raw)
            before.clear()
            before.append((job.status, job.stage))
            pipe.multi()
            result = change(job, pipe)
            if job.stage != Stage.synthesizing:
                job.progress = None  # the engine's progress means nothing once it has stopped
            after = job.model_dump_json()
            if after != raw.decode():
                pipe.set(key, after)
            if job.status.terminal and not before[0][0].terminal:
                # The end, announced with the ended record: a waiter answers from it.
                pipe.publish(keys.JOB_ENDED_CHANNEL, after)
            out.append((result, job))

        self.redis.transaction(txn, key)
        job = out[0][1]
        if job is not None and before and before[0] != (job.status, job.stage):
            _log_change(job, *before[0])
        return out[0]


def _log_change(job: JobRecord, status: JobStatus, stage: Stage | None) -> None:
    """One line per status change, after it is committed, for operators and log shippers."""
    was = f"{status}/{stage}" if stage else str(status)
    now = f"{job.status}/{job.stage}" if job.stage else str(job.status)
    why = f" ({job.error.code})" if job.error and job.status.terminal else ""
    log.info("[job %s] %s -> %s%s", job.id, was, now, why, extra={"job_id": job.id})


def _owned(job: JobRecord | None, job_id: str, owner: str) -> JobRecord:
    # Bytes: compare_digest refuses str beyond ASCII, and owner names may be any Unicode.
    if job is None or not hmac.compare_digest(job.owner.encode(), owner.encode()):
        raise NotFound(f"no job with id {job_id}", code="job_not_found")
    return job


def _place(pipe: Pipeline | AsyncPipeline, job_id: str) -> None:
    """Queue the reads of `JobStore.place_async`: the job's rank and the recent synthesis
    times."""
    pipe.zrank(keys.QUEUED, job_id)
    recent_synthesis_s(pipe)


def _ids(raw: Any) -> list[str]:
    return [item.decode() for item in raw]
