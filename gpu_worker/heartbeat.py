"""A daemon thread that renews this worker's heartbeat and, for the I/O worker, sweeps."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from common.schemas import WorkerHeartbeat
from common.workers import remove_heartbeat, write_heartbeat

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(
        self,
        client: redis.Redis,
        beat: WorkerHeartbeat,
        *,
        interval_s: float,
        ttl_s: float,
        also: Callable[[], object] | None = None,
        also_every_s: float = 5.0,
    ) -> None:
        super().__init__(name="ttsq-heartbeat", daemon=True)
        self.client, self.beat = client, beat
        self.interval_s, self.ttl_s = interval_s, ttl_s
        self.also, self.also_every_s = also, also_every_s
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def update(self, **fields: object) -> None:
        with self._lock:
            self.beat = self.beat.model_copy(update=fields)
        self._write()

    def _write(self) -> None:
        with self._lock:
            beat = self.beat
        try:
            write_heartbeat(self.client, beat, self.ttl_s)
        except redis.RedisError as exc:
            log.warning("heartbeat not written (%s); retrying", type(exc).__name__)

    def run(self) -> None:
        next_also = 0.0
        while True:
            self._write()
            if self.also is not None and time.monotonic() >= next_also:
                next_also = time.monotonic() + self.also_every_s
                try:
                    self.also()
                except redis.RedisError as exc:
                    log.warning("sweep skipped (%s)", type(exc).__name__)
                except Exception:
                    # A bad sweep must not stop the heartbeat (the worker would look dead).
                    log.exception("sweep failed")
            if self._stop_event.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError):
            remove_heartbeat(self.client, self.beat.instance)
