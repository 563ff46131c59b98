"""The engine interface: what the worker needs from a speech model, and nothing more.

An engine is built once per worker process (in the process that runs the jobs), warmed up,
then asked to `synthesize` one request at a time. It reports what it supports so the API can
refuse what it cannot do instead of ignoring it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from common.schemas import EngineCapabilities, JobRequest


@dataclass
class SynthesisOutput:
    pcm16: bytes
    sample_rate: int
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.pcm16) / 2 / self.sample_rate


class Engine(Protocol):
    name: str
    device: str
    model_version: str

    def capabilities(self) -> EngineCapabilities: ...

    def warmup(self) -> None: ...

    def synthesize(self, request: JobRequest) -> SynthesisOutput: ...
