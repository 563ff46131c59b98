"""An engine's progress reports, written to the job record for clients to read.

Progress is a courtesy: writes are throttled so they never slow synthesis, and a Redis error
is logged and dropped, never failing the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from common.jobs.store import JobStore
from common.worker.joblog import job_log


class JobProgress:
    """A `ProgressListener` for one job: at most one write per `every_s`; a report that comes
    sooner is dropped (the next one carries the news), and none is written once the job has
    left this worker (canceled, taken over)."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        instance: str,
        *,
        every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.job_id, self.instance = store, job_id, instance
        self.every_s, self.clock = every_s, clock
        self._last: float | None = None
        self._held = True

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if not self._held or (self._last is not None and now - self._last < self.every_s):
            return
        self._last = now
        try:
            self._held = self.store.note_progress(self.job_id, self.instance, done, total)
        except redis.RedisError as exc:
            job_log(__name__, self.job_id).warning("progress not recorded: %s", exc)
