"""The engine interface: what the worker needs from a speech model, and nothing more.

An engine is built once per worker process (in the process that runs the jobs), warmed up,
then asked to `synthesize` one request at a time; an engine that can run several at once
(IndexTTS2, batched) also has `synthesize_many`, and the worker reaches either through
`synthesize_many` below. It reports what it supports so the API can
refuse what it cannot do instead of ignoring it. An engine that can tell how far it is calls
`report_progress` while it works; the worker listens with `progress_to`, so engines that
cannot tell need nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from common.schemas.job_request import JobRequest
from common.schemas.workers import EngineCapabilities

#: Told (segments done, segments in all) as an engine works through a request.
ProgressListener = Callable[[int, int], None]
_listener: ContextVar[ProgressListener | None] = ContextVar("progress_listener", default=None)


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


def synthesize_many(
    engine: Engine, requests: Sequence[JobRequest], listeners: Sequence[ProgressListener | None]
) -> list[SynthesisOutput | Exception]:
    """Each request's audio or error: together where the engine batches (its own
    `synthesize_many`, IndexTTS2's), else one after another."""
    together = getattr(engine, "synthesize_many", None)
    if together is not None and len(requests) > 1:
        return list(together(requests, listeners))
    answers: list[SynthesisOutput | Exception] = []
    for request, listener in zip(requests, listeners, strict=True):
        try:
            with progress_to(listener):
                answers.append(engine.synthesize(request))
        except Exception as exc:
            answers.append(exc)
    return answers


def report_progress(done: int, total: int) -> None:
    """Called by an engine during `synthesize`: `done` of `total` segments finished. Nothing
    happens unless the worker listens."""
    listener = _listener.get()
    if listener is not None:
        listener(done, total)


@contextlib.contextmanager
def progress_to(listener: ProgressListener | None) -> Iterator[None]:
    """Send the engine's `report_progress` calls made inside this block to `listener`."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
