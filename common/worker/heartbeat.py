"""Background threads of a worker process: the heartbeat, and a periodic runner (the sweeper).

They are separate threads on purpose: a slow sweep (S3 deletes, a Redis outage) must never
delay the heartbeat, or the worker would look dead and its jobs would run twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from kombu.exceptions import OperationalError

from common.schemas.workers import WorkerHeartbeat
from common.worker.registry import remove_heartbeat, write_heartbeat

log = logging.getLogger(__name__)


class Every(threading.Thread):
    """Run `fn` every `interval_s` seconds until stopped; an error is logged, never fatal."""

    def __init__(self, interval_s: float, fn: Callable[[], object], *, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s, self.fn = interval_s, fn
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self._call(self.fn)
            if self._stop_event.wait(self.interval_s):
                return

    def _call(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (redis.RedisError, OperationalError) as exc:
            log.warning("%s: Redis unavailable (%s); trying again", self.name, exc)
        except Exception:
            log.exception("%s failed; next try in %ss", self.name, self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()


class Heartbeat(Every):
    """Renew this worker's heartbeat key; `refresh` supplies fields that change while it runs
    (the voices an engine can use now, read live). What `hold` changes, its thread writes at
    once, between beats."""

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
        #: Guards `beat`; held only to change it, so `note` never waits on Redis.
        self._lock = threading.Lock()
        #: Orders the writes: held across one, which writes the latest `beat`.
        self._writing = threading.Lock()
        #: When the last write succeeded, and since when every write came within `ttl_s` of
        #: the one before (`time.monotonic`): the key has existed all that while.
        self._written_at: float | None = None
        self._unbroken_since = 0.0
        #: Set by `hold`: write the beat now, not at the next interval.
        self._soon = threading.Event()

    def run(self) -> None:
        due = 0.0  # when the next whole beat (with `refresh`) is due, `time.monotonic`
        while not self._stop_event.is_set():
            if time.monotonic() >= due:
                self._call(self._beat)
                due = time.monotonic() + self.interval_s
            else:
                self._call(lambda: self._write(lambda _: {}))  # the beat as `hold` left it
            self._soon.wait(max(0.0, due - time.monotonic()))
            # Cleared after the wait and before the write: a `hold` made meanwhile is written
            # by the write that follows.
            self._soon.clear()

    def unbroken_since(self, since: float) -> bool:
        """Whether this worker's key has existed from `since` (`time.monotonic`) until now:
        then no sweeper can have taken its jobs over (it takes them only from a worker whose
        key expired). A second's margin for the write's own time."""
        written_at = self._written_at
        if written_at is None:
            return False
        return self._unbroken_since <= since and time.monotonic() - written_at < self.ttl_s - 1

    def update(self, **fields: object) -> None:
        self._write(lambda _: fields)

    def note(self, **fields: object) -> None:
        """Change fields in memory only: the next beat writes them. For the engine's thread,
        which must not wait on Redis between jobs."""
        self._change(lambda _: fields)

    def hold(self, job_id: str) -> None:
        """Say that this worker holds `job_id`, before claiming it: the heartbeat's thread
        writes it at once, while the caller claims. The sweeper takes a job from a live worker
        whose heartbeat does not hold it only `TTS_STUCK_GRACE_S` after its claim
        (`io_worker/sweeper.py`), so the write must land well within that, not before the
        claim; waiting for it was a round trip on every job's path (0.4-0.6 ms on a 2-core VM,
        `bench/overhead.py`)."""
        self._change(lambda beat: {"holding": [*beat.holding, job_id]})
        self._soon.set()

    def release(self, job_id: str, **fields: object) -> None:
        self._write(lambda beat: {"holding": [j for j in beat.holding if j != job_id], **fields})

    def _beat(self) -> None:
        fields: dict[str, Any] = {}
        if self.refresh is not None:
            try:
                fields = self.refresh()
            except Exception:
                log.exception("heartbeat refresh failed; keeping the last values")
        self._write(lambda _: fields)

    def _change(self, change: Callable[[WorkerHeartbeat], dict[str, Any]]) -> None:
        """The beat in memory changed by the fields `change` gives for it."""
        with self._lock:
            self.beat = self.beat.model_copy(update=change(self.beat))

    def _write(self, change: Callable[[WorkerHeartbeat], dict[str, Any]]) -> None:
        self._change(change)
        # One write at a time, each of the state as it is when its turn comes: the key never
        # goes back to an older state (the sweeper trusts `holding`).
        with self._writing:
            with self._lock:
                beat = self.beat
            try:
                asked = time.monotonic()
                write_heartbeat(self.client, beat, self.ttl_s)
                if self._written_at is None or asked - self._written_at >= self.ttl_s - 1:
                    self._unbroken_since = asked
                self._written_at = asked
            except redis.RedisError as exc:
                log.warning("heartbeat not written (%s); retrying", type(exc).__name__)

    def stop(self) -> None:
        super().stop()
        self._soon.set()
        with contextlib.suppress(redis.RedisError):
            remove_heartbeat(self.client, self.beat.instance)
