"""Reading jobs: one by id (an owner sees only its own), its place in the queue, an
owner's jobs newest first, a page at a time. The API's hot reads run on the event loop."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from common import keys
from common.jobs.base import StoreBase, owned, place
from common.jobs.eta import mean_of
from common.paging import Cursor, newest_first
from common.schemas.jobs import JobRecord, JobStatus


class Reads(StoreBase):
    """Jobs as stored, and where a queued one stands."""

    async def get_owned_async(self, job_id: str, owner: str) -> JobRecord:
        raw = await self.aio().get(keys.job(job_id))
        return owned(JobRecord.model_validate_json(raw) if raw else None, job_id, owner)

    def created_between(self, owner: str, since: datetime, until: datetime) -> list[JobRecord]:
        """The owner's jobs created in [since, until], oldest first, in two round trips."""
        ids = cast(
            list[bytes],
            self.redis.zrangebyscore(keys.owner_jobs(owner), since.timestamp(), until.timestamp()),
        )
        if not ids:
            return []
        raws = cast(list[bytes | None], self.redis.mget([keys.job(i.decode()) for i in ids]))
        return [JobRecord.model_validate_json(raw) for raw in raws if raw]

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

    async def place_async(self, job_id: str) -> tuple[int | None, float | None]:
        """A queued job's `queue_position` and the mean engine seconds of recent syntheses
        (`common/jobs/eta.py`), in one round trip."""
        pipe = self.aio().pipeline(transaction=False)
        place(pipe, job_id)
        position, recent = await pipe.execute()
        return position, mean_of(recent)
