"""The Celery app every process shares (broker, serialisation, routing) and the one way a
message is sent: `task_message` builds it, `publish_*` send it.

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

import base64
import functools
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import redis
from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.utils.uuid import uuid

from common import keys
from common.jobs.order import BROKER_STEP, priority_of
from common.redis_client import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, redis_url
from common.schemas.jobs import JobRecord
from common.settings import Settings

if TYPE_CHECKING:  # `publish_job_id` reads the job's priority from the store
    from common.jobs.store import JobStore

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_JOB_TASKS = {keys.TASK_SYNTHESIZE, keys.TASK_UPLOAD}


def broker_job_ids(
    client: redis.Redis, queue: str, chunk: int = 500, delivered_within_s: float | None = None
) -> set[str]:
    """Ids of the jobs that have a message in `queue`, waiting or delivered but not acked.

    Reads kombu's own keys (see `keys.BROKER_*`); each message's `argsrepr` header holds the
    task's arguments, and a message carries only its job id. Messages of other queues in the
    unacked hash are ignored. With `delivered_within_s`, a message delivered longer ago than
    that and never acked is left out: for a job still queued, its consumer died with it (a
    live one would have claimed the job), and kombu would give it back only after the whole
    visibility timeout.
    """
    found: set[str] = set()

    def note(message: dict[str, Any]) -> None:
        headers = message.get("headers") or {}
        if headers.get("task") in _JOB_TASKS:
            found.update(_JOB_ID.findall(str(headers.get("argsrepr", ""))))

    for name in keys.broker_queue_lists(queue):
        start = 0
        while batch := client.lrange(name, start, start + chunk - 1):
            for raw in batch:
                note(json.loads(raw))
            start += chunk
    since = 0.0 if delivered_within_s is None else time.time() - delivered_within_s
    at: dict[bytes, float] = {}
    if delivered_within_s is not None:
        scored = client.zrange(keys.BROKER_UNACKED_INDEX, 0, -1, withscores=True)
        at = dict(cast(list[tuple[bytes, float]], scored))
    for tag, raw in cast(dict[bytes, bytes], client.hgetall(keys.BROKER_UNACKED)).items():
        message, _exchange, routing_key = json.loads(raw)
        if routing_key == queue and at.get(tag, since) >= since:
            note(message)
    return found


#: kombu's checks of its consumers' long-lived connections (BRPOP, pub/sub), in seconds.
BROKER_HEALTH_CHECK_S = 10


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
            keys.TASK_DELIVER_WEBHOOK: {"queue": keys.WEBHOOK_QUEUE},
            keys.TASK_MERGE_TRACKS: {"queue": keys.IO_QUEUE},
        },
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # How often a consumer looks for messages whose visibility timeout ran out.
            "unacked_restore_interval": max(1, min(60, settings.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
            "socket_keepalive": True,
            # A connection that goes silent without closing (a NAT or firewall between a rented
            # GPU machine and Redis forgets it) fails after this instead of holding a
            # synchronous command (a publish, an ack, an event) for ever.
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            # kombu's checks: a BRPOP whose reply is this much overdue is dropped and sent
            # again on a new connection, so a silent consumer recovers in about 1 + 2 x this
            # many seconds (kombu's default, 25, makes it 51).
            "health_check_interval": BROKER_HEALTH_CHECK_S,
            # One list per step; BRPOP takes step 0 first (see `common/jobs/order.py`).
            "priority_steps": list(keys.BROKER_PRIORITY_STEPS),
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # The synthesis child says it is up only after its engine is loaded and warm; Celery's
        # default (4 s) would kill it mid-load and start another, for ever.
        worker_proc_alive_timeout=settings.engine_start_timeout_s,
        # Flower's view of the queue, sent after each task is on its way (`worker/consumer.py`).
        worker_send_task_events=True,
        worker_consumer="common.worker.consumer:Consumer",
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
    )
    return app


def publish_synthesis(
    app: Celery, job_id: str, countdown: float | None = None, priority: int = 0
) -> None:
    """`priority` is a kombu step (0 first); `common/jobs/order.py` picks it from the job."""
    app.send_task(
        keys.TASK_SYNTHESIZE,
        args=[job_id],
        queue=keys.SYNTH_QUEUE,
        countdown=countdown,
        priority=priority,
    )


def synthesis_message(app: Celery, job_id: str, priority: int = 0) -> tuple[str, bytes]:
    """The broker list and the bytes `publish_synthesis` would push there, for the job store
    to push in the job's own transaction (`JobStore.create(message=...)`): a stored job and its
    message then exist together or not at all, in one round trip."""
    return task_message(app, keys.TASK_SYNTHESIZE, keys.SYNTH_QUEUE, job_id, priority)


def upload_message(app: Celery, job_id: str) -> tuple[str, bytes]:
    """`publish_upload`'s message, pushed in the transaction that hands the audio over
    (`JobStore.mark_synthesized(message=...)`)."""
    return task_message(app, keys.TASK_UPLOAD, keys.IO_QUEUE, job_id)


def task_message(
    app: Celery, task: str, queue: str, job_id: str, priority: int = 0
) -> tuple[str, bytes]:
    """The broker list and the bytes `send_task(task, args=[job_id], queue=queue)` pushes.

    Celery's code builds one message per process, task, queue and priority, with stand-ins for
    what differs between two messages (`_template`); each message fills in its job id, a new
    task id and delivery tag. Built by Celery each time, a message took 20-50 µs of the API's
    CPU on the path of every submit (8 µs filled in).
    """
    if not _JOB_ID.fullmatch(job_id):  # filled into JSON and a repr as it is
        raise ValueError(f"not a job id: {job_id!r}")
    template = _template(app, task, queue, priority, os.getpid())  # the origin names the pid
    return template.fill(job_id, task_id=uuid(), tag=uuid())


#: The stand-ins `_template` builds a message with; none can occur in a job's message.
_TASK_ID, _JOB, _TAG, _BODY = "@@task_id@@", "@@job_id@@", "@@delivery_tag@@", "@@body@@"


class _Template(NamedTuple):
    queue_list: str
    #: The task's body as JSON, with the job id's stand-in; the message holds it in base64.
    body: str
    #: The whole message as JSON, with every stand-in.
    message: str

    def fill(self, job_id: str, *, task_id: str, tag: str) -> tuple[str, bytes]:
        body = base64.b64encode(self.body.replace(_JOB, job_id).encode()).decode()
        message = self.message.replace(_TASK_ID, task_id).replace(_TAG, tag)
        return self.queue_list, message.replace(_JOB, job_id).replace(_BODY, body).encode()


@functools.cache
def _template(app: Celery, task: str, queue: str, priority: int, pid: int) -> _Template:
    body, message = celery_message(app, task, queue, _JOB, priority, task_id=_TASK_ID, tag=_TAG)
    lists = dict(zip(keys.BROKER_PRIORITY_STEPS, keys.broker_queue_lists(queue), strict=True))
    return _Template(lists[priority], json.dumps(body), json.dumps({"body": _BODY, **message}))


def celery_message(
    app: Celery, task: str, queue: str, job_id: str, priority: int, *, task_id: str, tag: str
) -> tuple[Any, dict[str, Any]]:
    """The task's body and its message but for the body, as Celery's own code makes them
    (`amqp.create_task_message`, protocol 2), in kombu's Redis transport envelope
    (`virtual.Channel.prepare_message` and `_inplace_augment_message`: JSON body, base64, the
    anonymous exchange, the queue as routing key). `tests/test_queue_message.py` compares the
    result with what `send_task` pushes. No `task-sent` event is sent for it; Flower shows the
    task from the worker's events on."""
    headers, properties, body, _ = app.amqp.create_task_message(
        task_id,
        task,
        [job_id],
        {},
        root_id=task_id,
        origin=anon_nodename(),
        ignore_result=None,  # what send_task sends: the app's setting decides
        # What Celery's saferepr makes of these arguments, a third of its time.
        argsrepr=repr([job_id]),
        kwargsrepr="{}",
    )
    message = {
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": tag,
        },
    }
    return body, message


def publish_merge(app: Celery, job_id: str) -> None:
    """Ask the I/O worker to join the track `job_id` (`keys.track_merge`)."""
    app.send_task(keys.TASK_MERGE_TRACKS, args=[job_id], queue=keys.IO_QUEUE)


def publish_upload(app: Celery, job_id: str, countdown: float | None = None) -> None:
    app.send_task(keys.TASK_UPLOAD, args=[job_id], queue=keys.IO_QUEUE, countdown=countdown)


def publish_webhook(app: Celery, delivery_id: str) -> None:
    app.send_task(keys.TASK_DELIVER_WEBHOOK, args=[delivery_id], queue=keys.WEBHOOK_QUEUE)


def publish_job(app: Celery, job: JobRecord) -> None:
    """Send the job's synthesis message at its priority."""
    publish_synthesis(app, job.id, priority=BROKER_STEP[priority_of(job.request)])


def job_message(app: Celery, job: JobRecord) -> tuple[str, bytes]:
    """The job's synthesis message at its priority, for `JobStore.create(message=...)`."""
    return synthesis_message(app, job.id, BROKER_STEP[priority_of(job.request)])


def publish_job_id(app: Celery, store: JobStore, job_id: str) -> None:
    """`publish_job` for a caller holding only the id (the sweeper, a lost upload)."""
    job = store.get(job_id)
    step = BROKER_STEP[priority_of(job.request)] if job is not None else 0
    publish_synthesis(app, job_id, priority=step)
