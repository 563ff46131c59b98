"""What a worker says about itself: its heartbeat and its engine's capabilities."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class WorkerHeartbeat(BaseModel):
    """What a worker publishes every few seconds; `/ready` and `GET /v1/engine` read it."""

    instance: str
    kind: Literal["synth", "io"]
    hostname: str
    pid: int
    started_at: datetime
    engine: str | None = None
    device: str | None = None
    model_version: str | None = None
    ready: bool = False
    capabilities: EngineCapabilities | None = None
    jobs_done: int = 0
    #: The job on the engine now (or None: the engine is idle).
    current_job: str | None = None
    #: Every job this worker has claimed and not yet handed on: the next one, prepared and
    #: waiting for the engine, besides the current one, and the last one being handed to the
    #: uploader (`gpu_worker/pipeline.py`). The sweeper leaves these alone while it lives.
    holding: list[str] = Field(default_factory=list)
    #: When its last job ended (an idle GPU costs as much as a busy one).
    last_job_at: datetime | None = None
    #: GPU memory the engine holds, in MB, as of the last beat (0 on a CPU engine).
    gpu_memory_mb: float | None = None


class EngineCapabilities(BaseModel):
    """What an engine can do; a job asking for more is refused with 422."""

    engine: str
    sample_rate: int
    voices: list[str]
    default_voice: str
    languages: list[str]
    emotion: list[str] = Field(default_factory=list)
    generation: list[str] = Field(default_factory=list)
    #: Whether it speaks in the voice of any reference audio (`voice_url`), not only its own.
    voice_cloning: bool = False
    #: How an engine that cannot clone speaks an uploaded voice (None: it clones, or cannot).
    voice_mapping: str | None = None


WorkerHeartbeat.model_rebuild()
