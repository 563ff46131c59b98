"""Creating jobs, by every path: a new queued job (published with it, or through the outbox),
one per idempotency key, and a finished one the API made itself (a merged track). A submit on
the event loop is one round trip (`create_placed`)."""

from __future__ import annotations

from typing import NamedTuple, cast

from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from common import keys
from common.jobs.base import Message, StoreBase, log, new_job_id, place, score
from common.jobs.eta import mean_of
from common.jobs.order import queued_score
from common.schemas.job_request import JobRequest
from common.schemas.jobs import AudioInfo, JobRecord, JobStatus

#: An earlier job a repeated request may join: one that has not failed or been canceled.
REUSABLE = {JobStatus.queued, JobStatus.running, JobStatus.succeeded}

#: A new job's message, unless the result cache holds its key (KEYS: the cache entry, the
#: outbox, the broker list; ARGV: the outbox score, the job id, the message). A hit is held
#: in the outbox instead, for the API to end with a copy of the audio (or to publish, if no
#: copy can be made; else the sweeper does): 1 for a hit, 0 for a message pushed.
PUSH_UNLESS_CACHED = """
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('zadd', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
redis.call('lpush', KEYS[3], ARGV[3])
return 0
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
        """`create` on the event loop, with the new job's `place_async` read in the same
        transaction, and with `cache_key` and `message`, its message sent unless the result
        cache holds the key (`PUSH_UNLESS_CACHED`): a submit is one round trip."""
        pipe = self.aio().pipeline(transaction=True)
        job = self.add_job(
            owner, request, pipe, cache_key=cache_key, message=message, unless_cached=True
        )
        sent = len(pipe) - 1  # the message's command, add_job's last
        place(pipe, job.id)
        replies = await pipe.execute()
        cached = cache_key is not None and message is not None and replies[sent] == 1
        return Placed(job, replies[-2], mean_of(replies[-1]), cached)

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
        """Queue a new job's writes on `pipe`. With `message` (the job's broker list and
        synthesis message, `broker.job_message`) the message is pushed in the same
        transaction: the job is published as it is stored and never enters the outbox, which
        is for jobs published after their transaction (`mark_published`). With
        `unless_cached` and a `cache_key`, a hit is held in the outbox instead
        (`PUSH_UNLESS_CACHED`); the message's command is the last queued here."""
        now = self.clock()
        job = JobRecord(id=new_job_id(), owner=owner, request=request, created_at=now)
        job.batch_id, job.ref, job.cache_key = batch_id, ref, cache_key
        pipe.set(keys.job(job.id), job.model_dump_json())
        pipe.zadd(keys.owner_jobs(owner), {job.id: score(now)})
        pipe.zadd(keys.QUEUED, {job.id: queued_score(job)})
        held = score(now + self.publish_grace)
        if message is None:
            pipe.zadd(keys.UNPUBLISHED, {job.id: held})
        elif unless_cached and cache_key is not None:
            queue, body = message(job)
            where = (keys.result(cache_key), keys.UNPUBLISHED, queue)
            pipe.eval(PUSH_UNLESS_CACHED, len(where), *where, held, job.id, body)
        else:
            pipe.lpush(*message(job))
        log.info("[job %s] queued", job.id, extra={"job_id": job.id})
        return job
