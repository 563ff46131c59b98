"""The job store's plumbing, which every part of it builds on: the clients, the clock, and
`change`, the one place where a job's record changes.

Each change is optimistic: it reads the record, checks that the change is allowed from the
current status, and writes the record and the indexes together in one script that first checks
the record is still the one read (`APPLY_IF_UNCHANGED`; else it reads again and retries), so a
crash never leaves a job half-moved and a concurrent change is never overwritten. Two round
trips, a read and a write, where WATCH / MULTI took three; one where this process wrote the
record last (`Written`: the synthesis process's hand-off and end follow its own claim), as the
script's check then stands for the read. Times come from an injected clock.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from common import keys, metrics
from common.errors import NotFound
from common.jobs.eta import recent_synthesis_s
from common.schemas.jobs import JobRecord, JobStatus, Stage
from common.webhooks import END_EVENTS, emit_job_event

#: A change's writes, applied only if the job's record is still the one its change read
#: (KEYS[1]: the record; ARGV[1]: the record as read, ARGV[2]: as the change leaves it, then
#: each write as its word count and its words, as redis-py queued them). 1 when applied, 0 when
#: the record had changed. A record that is already the new one was changed by this very script:
#: redis-py sends a command again when its reply is lost with the connection, and the second
#: run must answer as the first did, not make the change a second time.
APPLY_IF_UNCHANGED = """
local now = redis.call('get', KEYS[1])
if now ~= ARGV[1] then
  if now == ARGV[2] then return 1 end
  return 0
end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""

Clock = Callable[[], datetime]
#: A new job's broker list and the message to push there (`broker.job_message`).
Message = Callable[[JobRecord], tuple[str, bytes]]
T = TypeVar("T")
log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return secrets.token_hex(16)


def score(at: datetime) -> float:
    return at.timestamp()


class Written:
    """The records this process wrote last, by job id (the latest `SIZE` jobs it changed), so
    that its next change of one starts from it instead of a read. Trusted only through
    `APPLY_IF_UNCHANGED`'s check: if anyone wrote the record since, the change reads it and
    runs again. Never kept for an ended job."""

    SIZE = 256

    def __init__(self) -> None:
        self._records: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, job_id: str) -> bytes | None:
        with self._lock:
            return self._records.pop(job_id, None)

    def keep(self, job_id: str, raw: bytes) -> None:
        with self._lock:
            self._records[job_id] = raw
            while len(self._records) > self.SIZE:
                self._records.popitem(last=False)


class StoreBase:
    """The clients, the clock, and the one transaction every change runs in."""

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
        self._apply_if_unchanged = client.register_script(APPLY_IF_UNCHANGED)
        self._written = Written()
        #: The API's event-loop client, for the `_async` methods (None in the workers).
        self.aredis = aclient
        self.job_ttl = timedelta(seconds=job_ttl_s)
        self.clock = clock
        #: How long a job may sit in the outbox before the sweeper sends its message itself.
        self.publish_grace = timedelta(seconds=publish_grace_s)

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.get(keys.job(job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    def get_owned(self, job_id: str, owner: str) -> JobRecord:
        """The job if `owner` made it; another owner's job is indistinguishable from none."""
        return owned(self.get(job_id), job_id, owner)

    def end(self, job: JobRecord, pipe: Pipeline, status: JobStatus, now: datetime) -> None:
        job.status, job.stage, job.finished_at = status, None, now
        job.expires_at, job.lease_until = now + self.job_ttl, None
        pipe.zrem(keys.QUEUED, job.id)
        pipe.zrem(keys.RUNNING, job.id)
        pipe.zrem(keys.UNPUBLISHED, job.id)
        pipe.zadd(keys.EXPIRY, {job.id: score(job.expires_at)})
        pipe.delete(keys.job_audio_handoff(job.id))
        emit_job_event(pipe, job, END_EVENTS[status], now, self.ttl_s)
        metrics.on_end(pipe, job)

    def aio(self) -> aioredis.Redis:
        if self.aredis is None:
            raise RuntimeError("this JobStore has no event-loop client (aclient)")
        return self.aredis

    @property
    def ttl_s(self) -> int:
        return int(self.job_ttl.total_seconds())

    def change(
        self, job_id: str, change: Callable[[JobRecord, Pipeline], T]
    ) -> tuple[T | None, JobRecord | None]:
        """Run `change` on the record; write it back with what `change` queued on its pipeline
        (never executed: its queue is the list of writes), unless the record changed since it
        was read, and then run `change` again on the new record. The record this process
        wrote last stands for the read (`Written`), checked by the write; a change that writes
        nothing is only trusted on a record read."""
        key = keys.job(job_id)
        remembered = self._written.take(job_id)
        while True:
            raw = remembered or cast(bytes | None, self.redis.get(key))
            if raw is None:
                return None, None
            job = JobRecord.model_validate_json(raw)
            before = (job.status, job.stage)
            pipe = self.redis.pipeline(transaction=False)
            result = change(job, pipe)
            if job.stage != Stage.synthesizing:
                job.progress = None  # the engine's progress means nothing once it has stopped
            after = job.model_dump_json()
            if after != raw.decode():
                pipe.set(key, after)
            if job.status.terminal and not before[0].terminal:
                # The end, announced with the ended record: a waiter answers from it.
                pipe.publish(keys.JOB_ENDED_CHANNEL, after)
            writes: list[Any] = [raw, after]
            for args, _ in pipe.command_stack:
                writes += [len(args), *args]
            if len(writes) == 2 and remembered is None:
                break
            if len(writes) > 2 and self._apply_if_unchanged([key], writes):
                if not job.status.terminal:
                    self._written.keep(job_id, after.encode())
                break
            remembered = None  # read it: it was changed, or nothing was written
        if before != (job.status, job.stage):
            log_change(job, *before)
        return result, job


def log_change(job: JobRecord, status: JobStatus, stage: Stage | None) -> None:
    """One line per status change, after it is committed, for operators and log shippers."""
    was = f"{status}/{stage}" if stage else str(status)
    now = f"{job.status}/{job.stage}" if job.stage else str(job.status)
    why = f" ({job.error.code})" if job.error and job.status.terminal else ""
    log.info("[job %s] %s -> %s%s", job.id, was, now, why, extra={"job_id": job.id})


def owned(job: JobRecord | None, job_id: str, owner: str) -> JobRecord:
    # Bytes: compare_digest refuses str beyond ASCII, and owner names may be any Unicode.
    if job is None or not hmac.compare_digest(job.owner.encode(), owner.encode()):
        raise NotFound(f"no job with id {job_id}", code="job_not_found")
    return job


def place(pipe: Pipeline | AsyncPipeline, job_id: str) -> None:
    """Queue the reads of `JobStore.place_async`: the job's rank and the recent synthesis
    times."""
    pipe.zrank(keys.QUEUED, job_id)
    recent_synthesis_s(pipe)


def ids(raw: Any) -> list[str]:
    return [item.decode() for item in raw]
