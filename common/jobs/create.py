"""Creating jobs, by every path: a new queued job (published with it, or through the outbox),
one per idempotency key, and a finished one the API made itself (a merged track). A submit on
the event loop is one round trip (`create_placed`)."""

from __future__ import annotations

from typing import NamedTuple, cast

from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline
from redis.commands.core import AsyncScript

from common import keys
from common.jobs.base import Message, StoreBase, log, new_job_id, score
from common.jobs.eta import RECENT, mean_of
from common.jobs.order import queued_score
from common.schemas.job_request import JobRequest
from common.schemas.jobs import AudioInfo, JobRecord, JobStatus

#: An earlier job a repeated request may join: one that has not failed or been canceled.
REUSABLE = {JobStatus.queued, JobStatus.running, JobStatus.succeeded}

#: Every write of a new job, as one command: its record, its owner's list, the queued set,
#: and either its message pushed to the broker list or its id held in the outbox (no message
#: given; or, with a cache key to check, a result cache hit, which the API ends with a copy of
#: the audio, else publishes, else the sweeper does). With the "place" flag it also reads the
#: job's rank in the queue and the recent synthesis times (`Creation.create_placed`).
#: KEYS: the record, the owner's jobs, queued, outbox, broker list, cache entry to check (or
#: ""), recent synthesis times. ARGV: the record's JSON, the id, the creation score, the
#: queued score, the outbox score, the message (or ""), "place" (or "").
#: Returns 1 for a hit held in the outbox, else 0; with "place", {that, rank, times}.
NEW_JOB = f"""
local id = ARGV[2]
redis.call('set', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[3], id)
redis.call('zadd', KEYS[3], ARGV[4], id)
local held = 0
if ARGV[6] == '' or (KEYS[6] ~= '' and redis.call('exists', KEYS[6]) == 1) then
  redis.call('zadd', KEYS[4], ARGV[5], id)
  if ARGV[6] ~= '' then held = 1 end
else
  redis.call('lpush', KEYS[5], ARGV[6])
end
if ARGV[7] == '' then return held end
return {{held, redis.call('zrank', KEYS[3], id), redis.call('lrange', KEYS[7], 0, {RECENT - 1})}}
"""


class Placed(NamedTuple):
    """A job stored on the event loop (`Creation.create_placed`), with what was read with it."""

    job: JobRecord
    #: Its rank among the queued jobs, and the recent syntheses' mean engine seconds.
    position: int | None
    mean_s: float | None
    #: Whether the result cache held its `cache_key`: then it was stored unpublished.
    cached: bool


class Creation(StoreBase):
    """New jobs."""

    _new_job_script: AsyncScript | None = None

    def create(
        self,
        owner: str,
        request: JobRequest,
        *,
        message: Message | None = None,
        cache_key: str | None = None,
    ) -> JobRecord:
        """A new queued job, in one round trip (with `message`, published too: `add_job`)."""
        pipe = self.redis.pipeline(transaction=True)
        job = self.add_job(owner, request, pipe, cache_key=cache_key, message=message)
        pipe.execute()
        return job

    async def create_placed(
        self,
        owner: str,
        request: JobRequest,
        *,
        message: Message | None = None,
        cache_key: str | None = None,
    ) -> Placed:
        """`create` on the event loop, with the new job's place read by the same command, and
        with `cache_key` and `message`, its message sent unless the result cache holds the key:
        a submit is one command, one round trip, one reply (`NEW_JOB`)."""
        job, keys_, args = self._new_job(
            owner, request, cache_key=cache_key, message=message, unless_cached=True
        )
        if self._new_job_script is None:  # registered once: EVALSHA, loaded when Redis lacks it
            self._new_job_script = self.aio().register_script(NEW_JOB)
        held, rank, recent = await self._new_job_script(keys_, [*args, "place"])
        return Placed(job, rank, mean_of(recent), held == 1)

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
            job = self.add_job(owner, request, pipe, cache_key=cache_key, message=message)
            pipe.set(key, job.id, ex=int(self.job_ttl.total_seconds()))
            out.append((job, True))

        self.redis.transaction(txn, key)
        return out[0]

    def add_finished(
        self, job_id: str, owner: str, request: JobRequest, audio: AudioInfo
    ) -> JobRecord:
        """Record audio made outside the engine (a drop-in batch's merged track, stored at
        `audio.key`) as a succeeded job: listed, read and expired like any other, and
        announced on `keys.JOB_ENDED_CHANNEL` like any job's end, for the request waiting."""
        now = self.clock()
        job = JobRecord(id=job_id, owner=owner, request=request, created_at=now)
        job.status, job.started_at, job.finished_at = JobStatus.succeeded, now, now
        job.audio, job.expires_at = audio, now + self.job_ttl
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.job(job.id), job.model_dump_json())
        pipe.zadd(keys.owner_jobs(owner), {job.id: score(now)})
        pipe.zadd(keys.EXPIRY, {job.id: score(job.expires_at)})
        pipe.publish(keys.JOB_ENDED_CHANNEL, job.model_dump_json())
        pipe.execute()
        return job

    def add_job(
        self,
        owner: str,
        request: JobRequest,
        pipe: Pipeline | AsyncPipeline,
        *,
        batch_id: str | None = None,
        ref: str | None = None,
        cache_key: str | None = None,
        message: Message | None = None,
        unless_cached: bool = False,
    ) -> JobRecord:
        """Queue a new job's writes on `pipe`, one command (`NEW_JOB`). With `message` (the
        job's broker list and synthesis message, `broker.job_message`) the message is pushed in
        the same transaction: the job is published as it is stored and never enters the
        outbox, which is for jobs published after their transaction (`mark_published`). With
        `unless_cached` and a `cache_key`, a hit is held in the outbox instead."""
        job, keys_, args = self._new_job(
            owner,
            request,
            batch_id=batch_id,
            ref=ref,
            cache_key=cache_key,
            message=message,
            unless_cached=unless_cached,
        )
        pipe.eval(NEW_JOB, len(keys_), *keys_, *args, "")
        return job

    def _new_job(
        self,
        owner: str,
        request: JobRequest,
        *,
        batch_id: str | None = None,
        ref: str | None = None,
        cache_key: str | None = None,
        message: Message | None = None,
        unless_cached: bool = False,
    ) -> tuple[JobRecord, list[str], list[str | bytes | float]]:
        """A new job's record, and `NEW_JOB`'s keys and arguments (all but "place")."""
        now = self.clock()
        job = JobRecord(id=new_job_id(), owner=owner, request=request, created_at=now)
        job.batch_id, job.ref, job.cache_key = batch_id, ref, cache_key
        queue, body = message(job) if message is not None else ("", "")
        check = keys.result(cache_key) if unless_cached and cache_key and message else ""
        keys_ = [
            keys.job(job.id),
            keys.owner_jobs(owner),
            keys.QUEUED,
            keys.UNPUBLISHED,
            queue,
            check,
            keys.RECENT_SYNTH_S,
        ]
        held = score(now + self.publish_grace)
        args: list[str | bytes | float] = [
            job.model_dump_json(),
            job.id,
            score(now),
            queued_score(job),
            held,
            body,
        ]
        log.info("[job %s] queued", job.id, extra={"job_id": job.id})
        return job, keys_, args
