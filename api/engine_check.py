"""Refuse, at submission, what the running engine cannot do (instead of ignoring it later).

The API never loads an engine: it reads what live synthesis workers published in their
heartbeats. With no worker alive the job is accepted and the worker checks it when it runs.

The heartbeats are read at most every 2 s, from a thread (`beats`) or on the event loop
(`beats_async`); the other methods take the list so that an event-loop caller never blocks.
"""

from __future__ import annotations

import time

import redis
import redis.asyncio as aioredis

from common.capabilities import unsupported
from common.errors import Unprocessable
from common.resultcache import engine_version
from common.schemas.job_request import JobRequest
from common.schemas.workers import EngineCapabilities, WorkerHeartbeat
from common.worker.registry import alive_workers, alive_workers_async, held

_CACHE_S = 2.0
Beats = list[WorkerHeartbeat]


class EngineView:
    def __init__(self, client: redis.Redis, aclient: aioredis.Redis) -> None:
        self.client, self.aclient = client, aclient
        self._at = 0.0
        self._beats: Beats = []

    def beats(self) -> Beats:
        """The live workers' heartbeats, read at most every 2 s."""
        if self._stale():
            self._keep(alive_workers(self.client))
        return self._beats

    async def beats_async(self) -> Beats:
        if self._stale():
            self._keep(await alive_workers_async(self.aclient))
        return self._beats

    def capabilities(self, beats: Beats | None = None) -> list[EngineCapabilities]:
        return [
            b.capabilities
            for b in self._or_read(beats)
            if b.kind == "synth" and b.ready and b.capabilities is not None
        ]

    def engine_version(self, beats: Beats | None = None) -> str | None:
        """What the ready synthesis workers run, if they agree (`resultcache.engine_version`)."""
        return engine_version(self._or_read(beats))

    def synth_workers(self, beats: Beats | None = None) -> tuple[int, int]:
        """How many synthesis workers are ready, and how many of those are on a job."""
        ready = [b for b in self._or_read(beats) if b.kind == "synth" and b.ready]
        return len(ready), sum(1 for b in ready if held(b))

    def check(self, request: JobRequest, beats: Beats | None = None) -> None:
        if request.on_unsupported == "ignore":  # the worker drops what it lacks, and says so
            return
        for caps in self.capabilities(beats):
            problems = unsupported(request, caps)
            if problems:
                raise Unprocessable("; ".join(problems), code="unsupported_by_engine")

    def _or_read(self, beats: Beats | None) -> Beats:
        """`beats` as given by an event-loop caller, or read now (from a thread)."""
        return self.beats() if beats is None else beats

    def _stale(self) -> bool:
        return time.monotonic() - self._at > _CACHE_S

    def _keep(self, beats: Beats) -> None:
        self._beats, self._at = beats, time.monotonic()
