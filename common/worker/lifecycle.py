"""What both worker processes share for their whole life: the parts every worker holds
(`Base`: Redis, the job store, storage, a heartbeat), how one stops when it cannot work, and
how a Redis write rides out a short outage.

Each process package builds on it: `gpu_worker/runtime.py` adds the engine and its pipeline,
`io_worker/runtime.py` the sweeper and the webhook pump.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from common.errors import TtsqError
from common.jobs.store import JobStore, utcnow
from common.redis_client import connect_redis
from common.retry import Retry
from common.schemas.workers import WorkerHeartbeat
from common.settings import Settings
from common.storage import Storage, make_storage
from common.worker.heartbeat import Heartbeat
from common.worker.registry import is_alive, new_instance_name

log = logging.getLogger(__name__)

#: The file `ttsq worker`/`ttsq io` reads, after Celery exits, for why this worker stopped.
STOP_REASON_ENV = "TTSQ_STOP_REASON_FILE"
#: Redis or the broker failed: what every worker retries, in process and as a Celery task.
REDIS_DOWN = (redis.RedisError, OperationalError)
#: A Redis write through a short outage: 0.5 s, doubling, six tries (about 15 s).
REDIS_OUTAGE = Retry(base_s=0.5, cap_s=8.0, attempts=6)
#: A task whose Redis call failed is sent again by Celery, backing off to 30 s.
TASK_REDIS_RETRY = Retry(base_s=1.0, cap_s=30.0, attempts=6)

T = TypeVar("T")
H = TypeVar("H", bound="Held")


@dataclass
class Base:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    storage: Storage
    heartbeat: Heartbeat

    @property
    def instance(self) -> str:
        return self.heartbeat.beat.instance

    def is_alive(self, instance: str) -> bool:
        return is_alive(self.redis, instance)


@dataclass
class Held:
    """What a worker process holds for its whole life: its parts, and what its role adds
    (`gpu_worker/runtime.py`, `io_worker/runtime.py`)."""

    parts: Base

    @property
    def heartbeat(self) -> Heartbeat:
        return self.parts.heartbeat

    @property
    def settings(self) -> Settings:
        return self.parts.settings

    @property
    def instance(self) -> str:
        return self.parts.instance


def held_or_requeue(current: Callable[[], H]) -> H:
    """The process's runtime, for a task; a process that failed to start and is being stopped
    has none, and gives the message back unrun."""
    try:
        return current()
    except RuntimeError:
        raise Reject("this worker process has no runtime", requeue=True) from None


def base(settings: Settings, kind: str) -> Base:
    """The parts of a worker of `kind` ("synth" or "io"); its heartbeat is not started yet."""
    client = connect_redis(settings)
    store = JobStore(
        client, job_ttl_s=settings.job_ttl_s, clock=utcnow, publish_grace_s=settings.stuck_grace_s
    )
    beat = WorkerHeartbeat(
        instance=new_instance_name(kind),
        kind=kind,  # type: ignore[arg-type]
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started_at=utcnow(),
    )
    heartbeat = Heartbeat(
        client, beat, interval_s=settings.heartbeat_interval_s, ttl_s=settings.heartbeat_ttl_s
    )
    return Base(settings, client, store, make_storage(settings), heartbeat)


def stop_worker(reason: str, *, in_child: bool) -> None:
    """This process cannot do its work: stop the whole Celery worker, exiting non-zero.

    Celery logs and swallows exceptions raised in its start-up signals, and its exit code after
    a shutdown requested by a signal is 0. So the reason goes to the file `ttsq worker`/`io`
    named in STOP_REASON_ENV (it exits 1 with it), and SIGTERM stops the worker (the parent,
    `in_child` of a prefork pool): a message it fetched meanwhile goes back to the queue unrun,
    and the supervisor restarts it with back-off.
    """
    log.critical("cannot work, stopping the worker: %s", reason)
    path = os.environ.get(STOP_REASON_ENV)
    if path:
        with open(path, "a") as f:
            f.write(reason + "\n")
    os.kill(os.getppid() if in_child else os.getpid(), signal.SIGTERM)


def describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, TtsqError) else f"{type(exc).__name__}: {exc}"


def patiently(step: Callable[[], T]) -> T:
    """Run a Redis/broker write, trying again through a short outage."""
    return REDIS_OUTAGE.run(
        step, when=lambda exc: isinstance(exc, REDIS_DOWN), what="Redis unavailable"
    )
