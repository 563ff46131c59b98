"""The ends a process heard announced (`keys.JOB_ENDED_CHANNEL`): job ids, each with when it
was heard, kept for a horizon. Both listeners use it: the API's waiters (`api/ends.py`) and the
synthesis process's check before the engine takes a job (`gpu_worker/ends_heard.py`). Not
locked: each keeps it under its own lock, or on its one event loop."""

from __future__ import annotations

from collections import OrderedDict


class HeardEnds:
    def __init__(self, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        #: Job id: when its end was heard (`time.monotonic`), oldest first.
        self._at: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._at

    def note(self, job_id: str, now: float) -> None:
        """Remember `job_id` as heard `now`, and forget the ends older than the horizon."""
        self._at[job_id] = now
        self._at.move_to_end(job_id)
        while self._at:
            oldest, at = next(iter(self._at.items()))
            if now - at < self.horizon_s:
                break
            del self._at[oldest]
