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
from common.schemas import EngineCapabilities, JobRequest
from common.workers import alive_workers

_CACHE_S = 2.0


class EngineView:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._at = 0.0
        self._caps: list[EngineCapabilities] = []
        self._version_at = 0.0
        self._version: str | None = None

    def capabilities(self) -> list[EngineCapabilities]:
        if time.monotonic() - self._at > _CACHE_S:
            self._caps = [
                b.capabilities
                for b in alive_workers(self.client)
                if b.kind == "synth" and b.ready and b.capabilities is not None
            ]
            self._at = time.monotonic()
        return self._caps

    def engine_version(self) -> str | None:
        """What the ready synthesis workers run, if they agree (`resultcache.engine_version`)."""
        if time.monotonic() - self._version_at > _CACHE_S:
            self._version = engine_version(alive_workers(self.client))
            self._version_at = time.monotonic()
        return self._version

    def check(self, request: JobRequest) -> None:
        for caps in self.capabilities():
            problems = unsupported(request, caps)
            if problems:
                raise Unprocessable("; ".join(problems), code="unsupported_by_engine")
