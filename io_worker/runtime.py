"""What the I/O process holds for its whole life: the worker's parts, the sweeper and the
webhook pump, each on its own thread. No engine, no torch: its imports never reach one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from celery import Celery

from common.broker import publish_job_id, publish_upload, publish_webhook
from common.jobs.batches import BatchStore
from common.settings import Settings
from common.storage import storage_problem
from common.worker.heartbeat import Every
from common.worker.lifecycle import Held, base, stop_worker
from io_worker.sweeper import Sweeper
from io_worker.webhooks import Pump

log = logging.getLogger(__name__)

#: How long a stopping I/O worker lets a sweep in progress finish; past it the lock is left
#: for the next sweeper to take over once this worker's heartbeat is gone.
SWEEP_STOP_WAIT_S = 10.0


@dataclass
class Runtime(Held):
    sweeper: Every
    webhooks: Every


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not started")
    return _current


def start(settings: Settings, app: Celery) -> Runtime:
    """Check storage, then start the I/O worker's heartbeat and, apart from it, the sweeper."""
    global _current
    parts = base(settings, "io")
    store, heartbeat = parts.store, parts.heartbeat
    problem = storage_problem(settings)
    if problem is not None:
        stop_worker(f"storage is not usable: {problem}", in_child=False)
        raise RuntimeError(problem)
    heartbeat.beat.ready = True
    sweeper = Sweeper(
        store=store,
        storage=parts.storage,
        publish_synthesis=partial(publish_job_id, app, store),
        publish_upload=partial(publish_upload, app),
        grace_s=settings.stuck_grace_s,
        upload_lease_s=settings.upload_lease_s,
        instance=parts.instance,
    )
    heartbeat.start()
    # Its own thread: a slow sweep (S3 deletes on expiry) never delays the heartbeat.
    sweeping = Every(settings.sweep_interval_s, sweeper.run, name="ttsq-sweeper")
    sweeping.start()
    pump = Pump(parts.redis, BatchStore(store), settings, partial(publish_webhook, app))
    webhooks = Every(settings.webhook_poll_s, pump.run, name="ttsq-webhooks")
    webhooks.start()
    _current = Runtime(parts, sweeping, webhooks)
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.sweeper.stop()
        # A sweep in progress ends and gives its lock back before the heartbeat goes.
        _current.sweeper.join(timeout=SWEEP_STOP_WAIT_S)
        _current.webhooks.stop()
        _current.heartbeat.stop()
        _current = None
