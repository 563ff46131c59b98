"""One retry policy for every retry in ttsq: uploads, synthesis, fetches, webhooks, Redis writes
and Celery's own redelivery of a task whose Redis call failed.

A `Retry` says how long to wait before the try after the `n`-th failed one (exponential from
`base_s`, capped at `cap_s`, or an explicit `schedule`) and when to give up (`attempts` tries
in all). What is worth retrying is the error's to say: `TtsqError.retryable` (transient
storage, Redis, a fetch that timed out), never a string.

Where the wait happens differs by design and is the caller's: an in-process loop sleeps
(`Retry.run`), a task asks Celery to send it again later (`Retry.celery_options`), the webhook
pump and the job store schedule the next attempt in Redis so that it survives a restart.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from common.errors import TtsqError

T = TypeVar("T")
log = logging.getLogger(__name__)


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, TtsqError) and exc.retryable


@dataclass(frozen=True)
class Retry:
    base_s: float = 1.0
    cap_s: float = 30.0
    #: Tries in all, the first included; None: the caller decides when to stop.
    attempts: int | None = None
    #: Explicit waits after the 1st, 2nd, … failed try; when set, `attempts` is its length + 1.
    schedule: tuple[float, ...] = ()
    #: ± this fraction of each wait, at random, so that many retriers do not march in step.
    jitter: float = 0.0

    @property
    def tries(self) -> int | None:
        return len(self.schedule) + 1 if self.schedule else self.attempts

    def delay(self, failed: int) -> float:
        """Seconds to wait after the `failed`-th failed try (1-based)."""
        n = max(1, failed)
        if self.schedule:
            wait = self.schedule[min(n, len(self.schedule)) - 1]
        else:
            wait = min(self.cap_s, self.base_s * 2 ** (n - 1))
        if self.jitter:
            wait *= random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311
        return float(wait)

    def exhausted(self, failed: int) -> bool:
        """Whether `failed` failed tries are all this policy allows."""
        tries = self.tries
        return tries is not None and failed >= tries

    def run(
        self,
        step: Callable[[], T],
        *,
        when: Callable[[BaseException], bool] = retryable,
        sleep: Callable[[float], None] = time.sleep,
        what: str = "",
    ) -> T:
        """Call `step` until it returns, sleeping between tries, for errors `when` allows."""
        failed = 0
        while True:
            try:
                return step()
            except Exception as exc:
                failed += 1
                if not when(exc) or self.exhausted(failed):
                    raise
                wait = self.delay(failed)
                if what:
                    log.warning(
                        "%s: %s; try %s in %.1fs", what, type(exc).__name__, failed + 1, wait
                    )
                sleep(wait)

    def celery_options(self, on: tuple[type[BaseException], ...]) -> dict[str, Any]:
        """The same policy as a Celery task's autoretry options."""
        return {
            "autoretry_for": on,
            "retry_backoff": self.base_s,
            "retry_backoff_max": self.cap_s,
            "max_retries": None if self.attempts is None else self.attempts - 1,
        }
