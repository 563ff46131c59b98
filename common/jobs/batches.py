"""Batches in Redis: every item's job and the batch record written in one transaction.

A batch's items are ordinary jobs that know their batch (`JobRecord.batch_id`). When one ends,
the job store notes the batch in `keys.BATCHES_TO_CHECK` in the same transaction; the I/O
worker then calls `complete_if_done`, which marks the batch completed, and queues its
`batch.completed` webhook, exactly once.
"""

from __future__ import annotations

import hmac
from typing import Any, cast

from redis.client import Pipeline

from common import keys
from common.errors import Conflict, NotFound
from common.jobs.store import JobStore, new_job_id
from common.schemas.batches import BatchRecord, BatchRequest
from common.schemas.jobs import JobRecord, JobStatus
from common.webhooks import emit

#: Drop a batch from the to-check set only if no item ended since it was read.
_DROP_IF_UNCHANGED = """
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


class BatchStore:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.redis = store.redis
        self._drop_if_unchanged = self.redis.register_script(_DROP_IF_UNCHANGED)

    def add(
        self, owner: str, body: BatchRequest, pipe: Pipeline
    ) -> tuple[BatchRecord, list[JobRecord]]:
        """Queue the batch's writes on `pipe` (inside MULTI): its record and every job."""
        batch_id = new_job_id()
        jobs = [
            self.store.add_job(owner, request, pipe, batch_id=batch_id, ref=item.ref)
            for item, request in zip(body.items, body.item_requests(), strict=True)
        ]
        batch = BatchRecord(
            id=batch_id,
            owner=owner,
            created_at=jobs[0].created_at,
            job_ids=[job.id for job in jobs],
            refs=[item.ref for item in body.items],
            webhook_url=body.webhook_url,
            webhook_events=body.events(),
            metadata=body.metadata,
        )
        pipe.set(keys.batch(batch_id), batch.model_dump_json())
        return batch, jobs

    def create(self, owner: str, body: BatchRequest) -> tuple[BatchRecord, list[JobRecord]]:
        pipe = self.redis.pipeline(transaction=True)
        out = self.add(owner, body, pipe)
        pipe.execute()
        return out

    def get(self, batch_id: str) -> BatchRecord | None:
        raw = self.redis.get(keys.batch(batch_id))
        return BatchRecord.model_validate_json(raw) if raw else None

    def get_owned(self, batch_id: str, owner: str) -> BatchRecord:
        batch = self.get(batch_id)
        if batch is None or not hmac.compare_digest(batch.owner.encode(), owner.encode()):
            raise NotFound(f"no batch with id {batch_id}", code="batch_not_found")
        return batch

    def jobs(self, batch: BatchRecord) -> list[JobRecord | None]:
        """The items' jobs in order, in one read; None for one that expired."""
        raws = cast(list[bytes | None], self.redis.mget([keys.job(i) for i in batch.job_ids]))
        return [JobRecord.model_validate_json(raw) if raw else None for raw in raws]

    def cancel(self, batch_id: str, owner: str) -> BatchRecord:
        """Cancel every item that has not ended (each in its own transaction, as one job's
        cancel is: an item that ends meanwhile keeps its end)."""
        batch = self.get_owned(batch_id, owner)
        for job_id in batch.job_ids:
            try:
                self.store.cancel(job_id, owner)
            except (Conflict, NotFound):
                continue
        batch.canceled_at = batch.canceled_at or self.store.clock()
        self.redis.set(keys.batch(batch_id), batch.model_dump_json(), keepttl=True)
        return batch

    def to_check(self, limit: int = 200) -> list[tuple[str, float]]:
        raw = cast(
            list[tuple[bytes, float]],
            self.redis.zrange(keys.BATCHES_TO_CHECK, 0, limit - 1, withscores=True),
        )
        return [(member.decode(), score) for member, score in raw]

    def complete_if_done(self, batch_id: str, seen: float) -> bool:
        """If every item ended: mark the batch completed and queue `batch.completed`, in one
        transaction, once. `seen` is its score in the to-check set when read."""
        key = keys.batch(batch_id)
        done: list[bool] = []

        def txn(pipe: Pipeline) -> None:
            done.clear()
            raw = cast(bytes | None, pipe.get(key))
            batch = BatchRecord.model_validate_json(raw) if raw else None
            if batch is not None and batch.completed_at is None:
                jobs = self.jobs(batch)
                if any(job is not None and not job.status.terminal for job in jobs):
                    return
            pipe.multi()
            pipe.zrem(keys.BATCHES_TO_CHECK, batch_id)
            if batch is None or batch.completed_at is not None:
                return
            now = self.store.clock()
            batch.completed_at = now
            pipe.set(key, batch.model_dump_json(), ex=self.store.ttl_s)
            if batch.webhook_url and "batch.completed" in batch.webhook_events:
                emit(
                    pipe,
                    owner=batch.owner,
                    subject_id=batch.id,
                    event="batch.completed",
                    url=batch.webhook_url,
                    data=completed_data(batch, jobs),
                    now=now,
                    ttl_s=self.store.ttl_s,
                )
            done.append(True)

        self.redis.transaction(txn, key)
        if not done:
            self._drop_if_unchanged(keys=[keys.BATCHES_TO_CHECK], args=[batch_id, seen])
        return bool(done)


def completed_data(batch: BatchRecord, jobs: list[JobRecord | None]) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for ref, job_id, job in zip(batch.refs, batch.job_ids, jobs, strict=True):
        status = job.status if job is not None else JobStatus.failed
        counts[status.value] = counts.get(status.value, 0) + 1
        item: dict[str, Any] = {"ref": ref, "job_id": job_id, "status": status.value}
        if job is not None and job.audio is not None:
            item["audio_key"] = job.audio.key
        if job is not None and job.error is not None:
            item["error_code"] = job.error.code
        items.append(item)
    return {
        "id": batch.id,
        "status": "completed",
        "counts": counts,
        "items": items,
        "metadata": batch.metadata,
    }
