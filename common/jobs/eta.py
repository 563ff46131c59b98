"""A queued job's estimated wait, from how long recent syntheses took.

Rough by design: the mean of the latest syntheses' engine seconds, times the jobs that will
start before this one (its `queue_position`) plus one for each busy worker (as if each had a
whole job left), over the ready workers. It cannot foresee cache hits (faster), retries or
upload time (slower), or an interactive job accepted later (a batch job waits longer).
"""

from __future__ import annotations

from typing import cast

import redis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from common import keys

#: How many of the latest syntheses the mean is taken over.
RECENT = 50


def note_synthesis_time(pipe: Pipeline, synth_s: float) -> None:
    """Record one synthesis's engine seconds (inside the job store's transaction)."""
    pipe.lpush(keys.RECENT_SYNTH_S, f"{synth_s:.4f}")
    pipe.ltrim(keys.RECENT_SYNTH_S, 0, RECENT - 1)


def mean_synthesis_s(client: redis.Redis) -> float | None:
    return mean_of(cast(list[bytes], client.lrange(keys.RECENT_SYNTH_S, 0, RECENT - 1)))


def recent_synthesis_s(pipe: Pipeline | AsyncPipeline) -> None:
    """Queue the read `mean_of` takes (for a caller's pipeline)."""
    pipe.lrange(keys.RECENT_SYNTH_S, 0, RECENT - 1)


def mean_of(recent: list[bytes]) -> float | None:
    return sum(float(x) for x in recent) / len(recent) if recent else None


def estimate_wait_s(position: int, *, mean_s: float | None, ready: int, busy: int) -> float | None:
    """Seconds until a job at `position` starts; None with no workers or no history."""
    if mean_s is None or ready == 0:
        return None
    return round((position + busy) * mean_s / ready, 1)
