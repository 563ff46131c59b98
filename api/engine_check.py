"""Refuse, at submission, what the running engine cannot do (instead of ignoring it later).

The API never loads an engine: it reads what live synthesis workers published in their
heartbeats. With no worker alive the job is accepted and the worker checks it when it runs.
"""

from __future__ import annotations

import time

import redis

from common.capabilities import unsupported
from common.errors import Unprocessable
from common.resultcache import engine_version
from common.schemas import EngineCapabilities, JobRequest, WorkerHeartbeat
from common.workers import alive_workers, held

_CACHE_S = 2.0


class EngineView:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._at = 0.0
        self._beats: list[WorkerHeartbeat] = []

    def beats(self) -> list[WorkerHeartbeat]:
        """The live workers' heartbeats, read at most every 2 s."""
        if time.monotonic() - self._at > _CACHE_S:
            self._beats = alive_workers(self.client)
            self._at = time.monotonic()
        return self._beats

    def capabilities(self) -> list[EngineCapabilities]:
        return [
            b.capabilities
            for b in self.beats()
            if b.kind == "synth" and b.ready and b.capabilities is not None
        ]

    def engine_version(self) -> str | None:
        """What the ready synthesis workers run, if they agree (`resultcache.engine_version`)."""
        return engine_version(self.beats())

    def synth_workers(self) -> tuple[int, int]:
        """How many synthesis workers are ready, and how many of those are on a job."""
        ready = [b for b in self.beats() if b.kind == "synth" and b.ready]
        return len(ready), sum(1 for b in ready if held(b))

    def check(self, request: JobRequest) -> None:
        for caps in self.capabilities():
            problems = unsupported(request, caps)
            if problems:
                raise Unprocessable("; ".join(problems), code="unsupported_by_engine")
