"""The Celery app both sides share (broker, serialisation, routing) and the Redis connection.

Policy, in one place:
- JSON only; a message carries the job id and nothing else; results are not stored in Celery
  (the job store is the source of truth).
- Late ack and prefetch 1: a message leaves Redis only after its task returned, so a worker that
  dies mid-job loses nothing. `reject_on_worker_lost` sends it back rather than dropping it; the
  job store's attempt counter keeps a poison job from looping.
- `visibility_timeout` must exceed the longest job; a redelivery that still happens finds the
  job held by a live worker and is dropped (see `JobStore.claim`).
"""

from __future__ import annotations

import redis
from celery import Celery
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common import keys
from common.settings import Settings


def redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    from common import embedded_redis

    return embedded_redis.url()


def connect_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url(settings),
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=6),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def make_celery(settings: Settings, main: str = "ttsq") -> Celery:
    app = Celery(main, broker=redis_url(settings))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=keys.SYNTH_QUEUE,
        task_routes={
            keys.TASK_SYNTHESIZE: {"queue": keys.SYNTH_QUEUE},
            keys.TASK_UPLOAD: {"queue": keys.IO_QUEUE},
        },
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # How often a consumer looks for messages whose visibility timeout ran out.
            "unacked_restore_interval": max(1, min(60, settings.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
            "socket_keepalive": True,
            "retry_on_timeout": True,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Flower's view of the queue.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
    )
    return app


def publish_synthesis(app: Celery, job_id: str, countdown: float | None = None) -> None:
    app.send_task(keys.TASK_SYNTHESIZE, args=[job_id], queue=keys.SYNTH_QUEUE, countdown=countdown)


def publish_upload(app: Celery, job_id: str, countdown: float | None = None) -> None:
    app.send_task(keys.TASK_UPLOAD, args=[job_id], queue=keys.IO_QUEUE, countdown=countdown)
