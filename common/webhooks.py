"""Webhook events: what is delivered (Standard Webhooks), kept where, and signed with what.

An event enters the webhook outbox (`keys.WEBHOOKS_DUE`) in the same Redis transaction as
the status change it reports (`emit`), so an accepted event survives any crash: the I/O worker
(`io_worker/webhooks.py`) delivers it or records why it gave up. The synthesis worker adds
only these writes to its claim's own transaction; it never waits on a receiver.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any, Literal, cast

import redis
from redis.client import Pipeline

from common import keys
from common.schemas.job_request import JobEventName
from common.schemas.jobs import JobRecord, JobStatus
from common.schemas.webhooks import Delivery
from common.settings import Settings

EventName = JobEventName | Literal["batch.completed"]
#: What a job reports when its request names no `webhook_events`.
DEFAULT_JOB_EVENTS: tuple[str, ...] = ("job.succeeded", "job.failed", "job.canceled")
#: The event each ending status emits.
END_EVENTS = {
    JobStatus.succeeded: "job.succeeded",
    JobStatus.failed: "job.failed",
    JobStatus.canceled: "job.canceled",
}


def new_delivery_id() -> str:
    return "msg_" + secrets.token_hex(16)


def emit(
    pipe: Pipeline,
    *,
    owner: str,
    subject_id: str,
    event: str,
    url: str,
    data: dict[str, Any],
    now: datetime,
    ttl_s: int,
) -> None:
    """Queue one delivery inside the caller's transaction (`pipe` is after MULTI)."""
    delivery = Delivery(
        id=new_delivery_id(),
        owner=owner,
        subject_id=subject_id,
        event=event,
        url=url,
        created_at=now,
        data=data,
        next_attempt_at=now,
    )
    pipe.set(keys.webhook_delivery(delivery.id), delivery.model_dump_json(), ex=ttl_s)
    pipe.rpush(keys.subject_deliveries(subject_id), delivery.id)
    pipe.expire(keys.subject_deliveries(subject_id), ttl_s)
    pipe.zadd(keys.WEBHOOKS_DUE, {delivery.id: now.timestamp()})


def emit_job_event(pipe: Pipeline, job: JobRecord, event: str, now: datetime, ttl_s: int) -> None:
    """The job store's hook: queue `event` if the job asked for it, and note its batch."""
    if job.batch_id is not None and job.status.terminal:
        pipe.zincrby(keys.BATCHES_TO_CHECK, 1, job.batch_id)
    request = job.request
    wanted = DEFAULT_JOB_EVENTS if request.webhook_events is None else request.webhook_events
    if request.webhook_url is None or event not in wanted:
        return
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "metadata": request.metadata,
    }
    if job.batch_id is not None:
        data.update(batch_id=job.batch_id, ref=job.ref)
    if job.error is not None:
        data["error"] = job.error.model_dump()
    if job.audio is not None:
        data["audio_key"] = job.audio.key  # the I/O worker makes it a URL (`render`)
    emit(
        pipe,
        owner=job.owner,
        subject_id=job.id,
        event=event,
        url=request.webhook_url,
        data=data,
        now=now,
        ttl_s=ttl_s,
    )


def deliveries_of(client: redis.Redis, subject_id: str) -> list[Delivery]:
    ids = cast(list[bytes], client.lrange(keys.subject_deliveries(subject_id), 0, -1))
    if not ids:
        return []
    raws = cast(list[bytes | None], client.mget([keys.webhook_delivery(i.decode()) for i in ids]))
    return [Delivery.model_validate_json(raw) for raw in raws if raw]


# -- secrets ----------------------------------------------------------------------------


def secret_for(owner: str, settings: Settings, client: redis.Redis) -> str:
    """The owner's `whsec_` secret: its own (TTS_WEBHOOK_SECRETS), the default
    (TTS_WEBHOOK_SECRET), or one derived from a random key kept in Redis, which the API (that
    shows it) and every I/O worker (that signs with it) share, wherever they run."""
    if settings.webhook_secrets is not None:
        for pair in settings.webhook_secrets.get_secret_value().split(","):
            name, _, value = pair.strip().partition(":")
            if name == owner and value:
                return value
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return settings.webhook_secret.get_secret_value()
    client.set(keys.WEBHOOK_MASTER_KEY, secrets.token_bytes(32), nx=True)
    master = cast(bytes, client.get(keys.WEBHOOK_MASTER_KEY))
    derived = hmac.new(master, b"ttsq-webhook:" + owner.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(derived).decode()
