"""What the sweeper reads and marks: the outbox of unpublished jobs, the queued and running
indexes, objects left in storage, and jobs past their expiry."""

from __future__ import annotations

from datetime import datetime

from redis.client import Pipeline

from common import keys
from common.jobs.base import StoreBase, ids, score
from common.schemas.jobs import JobRecord, JobStatus


class SweepViews(StoreBase):
    """The indexes the sweeper walks."""

    def outbox_due(self, at: datetime) -> list[str]:
        """Jobs whose message the sweeper must send now."""
        return ids(self.redis.zrangebyscore(keys.UNPUBLISHED, "-inf", score(at)))

    def in_outbox(self) -> set[str]:
        return set(ids(self.redis.zrange(keys.UNPUBLISHED, 0, -1)))

    def enter_outbox(self, job_id: str) -> bool:
        """Send a queued job's message again (the sweeper found it has none). One transaction:
        False when the job is no longer queued or already in the outbox."""

        def change(job: JobRecord, pipe: Pipeline) -> bool:
            if job.status != JobStatus.queued:
                return False
            pipe.zadd(keys.UNPUBLISHED, {job.id: score(self.clock())}, nx=True)
            return True

        return bool(self.change(job_id, change)[0])

    def queued_ids(self) -> list[str]:
        return ids(self.redis.zrange(keys.QUEUED, 0, -1))

    def running_ids(self) -> list[str]:
        return ids(self.redis.zrange(keys.RUNNING, 0, -1))

    def note_orphan_object(self, key: str) -> None:
        """Remember a storage key whose delete failed, for the sweeper to delete later."""
        self.redis.hset(keys.ORPHAN_OBJECTS, key, score(self.clock()))

    def orphan_objects(self) -> list[str]:
        return ids(self.redis.hkeys(keys.ORPHAN_OBJECTS))

    def forget_orphan_object(self, key: str) -> None:
        self.redis.hdel(keys.ORPHAN_OBJECTS, key)

    def expired_before(self, at: datetime) -> list[str]:
        return ids(self.redis.zrangebyscore(keys.EXPIRY, "-inf", score(at)))
