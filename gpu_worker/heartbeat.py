"""Background threads of a worker process: the heartbeat, and a periodic runner (the sweeper).

They are separate threads on purpose: a slow sweep (S3 deletes, a Redis outage) must never
delay the heartbeat, or the worker would look dead and its jobs would run twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from kombu.exceptions import OperationalError

from common.schemas import WorkerHeartbeat
from common.workers import remove_heartbeat, write_heartbeat

log = logging.getLogger(__name__)


class Every(threading.Thread):
    """Run `fn` every `interval_s` seconds until stopped; an error is logged, never fatal."""

    def __init__(self, interval_s: float, fn: Callable[[], object], *, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s, self.fn = interval_s, fn
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.fn()
            except (redis.RedisError, OperationalError) as exc:
                log.warning("%s: Redis unavailable (%s); trying again", self.name, exc)
            except Exception:
                log.exception("%s failed; next try in %ss", self.name, self.interval_s)
            if self._stop_event.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop_event.set()


class Heartbeat(Every):
    """Renew this worker's heartbeat key; `refresh` supplies fields that change while it runs
    (the voices an engine can use now, read live)."""

    def __init__(
        self,
        client: redis.Redis,
        beat: WorkerHeartbeat,
        *,
        interval_s: float,
        ttl_s: float,
        refresh: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(interval_s, self._beat, name="ttsq-heartbeat")
        self.client, self.beat, self.ttl_s, self.refresh = client, beat, ttl_s, refresh
        self._lock = threading.Lock()

    def update(self, **fields: object) -> None:
        self._write(fields)

    def _beat(self) -> None:
        fields: dict[str, Any] = {}
        if self.refresh is not None:
            try:
                fields = self.refresh()
            except Exception:
                log.exception("heartbeat refresh failed; keeping the last values")
        self._write(fields)

    def _write(self, fields: dict[str, Any]) -> None:
        # Change and write under one lock, so the key never goes back to an older state
        # (the sweeper trusts `current_job`).
        with self._lock:
            self.beat = self.beat.model_copy(update=fields)
            try:
                write_heartbeat(self.client, self.beat, self.ttl_s)
            except redis.RedisError as exc:
                log.warning("heartbeat not written (%s); retrying", type(exc).__name__)

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(redis.RedisError):
            remove_heartbeat(self.client, self.beat.instance)
