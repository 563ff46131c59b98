"""`Idempotency-Key`: a client's retried submit answers with what the first one made.

The key, scoped to the API key's owner, names what it made and the body's fingerprint for
`TTL_S`. Creating and naming happen in one WATCH/MULTI transaction on the key, so concurrent
requests with one key make one job or batch; the same key with another body is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal, TypeVar, cast

from pydantic import BaseModel
from redis.client import Pipeline

from common import keys
from common.errors import Unprocessable
from common.jobs.batches import BatchStore
from common.jobs.store import JobStore, Message
from common.schemas.batches import BatchRecord, BatchRequest
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord

#: How long a key is remembered.
TTL_S = 24 * 3600
MAX_KEY_LENGTH = 255
T = TypeVar("T")


class IdempotencyEntry(BaseModel):
    kind: Literal["job", "batch"]
    fingerprint: str
    id: str


def fingerprint(kind: str, body: BaseModel) -> str:
    return hashlib.sha256(f"{kind}:{body.model_dump_json()}".encode()).hexdigest()


def _once(
    store: JobStore,
    owner: str,
    idem_key: str,
    kind: Literal["job", "batch"],
    body: BaseModel,
    load: Callable[[str], T | None],
    add: Callable[[Pipeline], tuple[str, T]],
) -> tuple[T, bool]:
    key = keys.idempotency(owner, idem_key)
    print_ = fingerprint(kind, body)
    out: list[tuple[T, bool]] = []

    def txn(pipe: Pipeline) -> None:
        out.clear()
        raw = cast(bytes | None, pipe.get(key))
        if raw is not None:
            entry = IdempotencyEntry.model_validate_json(raw)
            if entry.kind != kind or entry.fingerprint != print_:
                raise Unprocessable(
                    "Idempotency-Key: this key was used with a different request; "
                    "use a new key for a new request",
                    code="idempotency_key_reused",
                )
            earlier = load(entry.id)
            if earlier is not None:
                out.append((earlier, False))
                return
        pipe.multi()
        made_id, made = add(pipe)
        entry = IdempotencyEntry(kind=kind, fingerprint=print_, id=made_id)
        pipe.set(key, entry.model_dump_json(), ex=TTL_S)
        out.append((made, True))

    store.redis.transaction(txn, key)
    return out[0]


def create_job_once(
    store: JobStore,
    owner: str,
    request: JobRequest,
    idem_key: str,
    *,
    message: Message | None = None,
    cache_key: str | None = None,
) -> tuple[JobRecord, bool]:
    """The job this key made for this body, or a new one. Returns it and whether it is new.
    `message` and `cache_key` are for a new one (`JobStore.add_job`)."""

    def add(pipe: Pipeline) -> tuple[str, JobRecord]:
        job = store.add_job(owner, request, pipe, message=message, cache_key=cache_key)
        return job.id, job

    return _once(store, owner, idem_key, "job", request, store.get, add)


def create_batch_once(
    batches: BatchStore, owner: str, body: BatchRequest, idem_key: str
) -> tuple[tuple[BatchRecord, list[JobRecord]], bool]:
    """The batch this key made for this body, or a new one (its jobs empty when not new)."""

    def load(batch_id: str) -> tuple[BatchRecord, list[JobRecord]] | None:
        batch = batches.get(batch_id)
        return (batch, []) if batch is not None else None

    def add(pipe: Pipeline) -> tuple[str, tuple[BatchRecord, list[JobRecord]]]:
        batch, jobs = batches.add(owner, body, pipe)
        return batch.id, (batch, jobs)

    return _once(batches.store, owner, idem_key, "batch", body, load, add)
