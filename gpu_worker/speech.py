"""From jobs' requests to their audio: the engine calls a batch of jobs needs, in batches.

A plain request is one engine call; a timed script is one call per segment, each fitted to its
slot and placed at its start (strict, unless the request says otherwise: each fills exactly its
slot). `speak_many` lays the calls of several jobs end to end and gives the engine up to
`batch` at a time (`synthesize_many`), so a dubbing run's lines share the GPU's batched stage
whether they came as separate jobs or as one script. Each job gets its audio or its own error:
one failing call fails its job, never the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.audio.codec import from_pcm16, pcm16
from common.audio.fit import fit, place
from common.schemas.job_request import JobRequest
from gpu_worker.engines.base import Engine, ProgressListener, SynthesisOutput, synthesize_many


@dataclass(frozen=True)
class _Call:
    job: int
    request: JobRequest


def speak(
    request: JobRequest,
    engine: Engine,
    *,
    max_stretch: float,
    strict_duration: bool = False,
    max_strict_stretch: float = 2.5,
    progress: ProgressListener | None = None,
) -> SynthesisOutput:
    """One job's audio (its reference audio already resolved); raises its error.

    `progress` hears segments done of total: the script's, or else the engine's own."""
    (out,) = speak_many(
        [request],
        engine,
        max_stretch=max_stretch,
        strict_duration=strict_duration,
        max_strict_stretch=max_strict_stretch,
        progress=[progress],
    )
    if isinstance(out, Exception):
        raise out
    return out


def speak_many(
    requests: Sequence[JobRequest],
    engine: Engine,
    *,
    max_stretch: float,
    batch: int = 1,
    strict_duration: bool = False,
    max_strict_stretch: float = 2.5,
    progress: Sequence[ProgressListener | None],
) -> list[SynthesisOutput | Exception]:
    """Each job's audio or error, the engine given up to `batch` calls at a time."""
    calls = [call for i, request in enumerate(requests) for call in _calls(i, request)]
    results: list[SynthesisOutput | Exception] = []
    done = [0] * len(requests)
    for i, r in enumerate(requests):
        if r.segments and progress[i] is not None:
            progress[i](0, len(r.segments))  # type: ignore[misc]
    for start in range(0, len(calls), batch):
        chunk = calls[start : start + batch]
        # A script's progress is its segments done; a plain text's is the engine's own.
        listeners = [None if requests[c.job].segments else progress[c.job] for c in chunk]
        results += synthesize_many(engine, [c.request for c in chunk], listeners)
        for c in chunk:
            done[c.job] += 1
        for j in sorted({c.job for c in chunk}):
            listener, segments = progress[j], requests[j].segments
            if segments and listener is not None:
                listener(done[j], len(segments))
    answers: list[SynthesisOutput | Exception] = []
    for i, request in enumerate(requests):
        mine = [out for call, out in zip(calls, results, strict=True) if call.job == i]
        failed = next((out for out in mine if isinstance(out, Exception)), None)
        if failed is not None:
            answers.append(failed)
        elif not request.segments:
            answers.append(mine[0])
        else:
            outs = [out for out in mine if isinstance(out, SynthesisOutput)]
            answers.append(_placed(request, outs, max_stretch, strict_duration, max_strict_stretch))
    return answers


def _calls(job: int, request: JobRequest) -> list[_Call]:
    if not request.segments:
        return [_Call(job, request)]
    return [
        _Call(job, request.model_copy(update={"text": s.text, "segments": None}))
        for s in request.segments
    ]


def _placed(
    request: JobRequest,
    outs: list[SynthesisOutput],
    max_stretch: float,
    strict_duration: bool,
    max_strict_stretch: float,
) -> SynthesisOutput | Exception:
    """A timed script's segments, each fitted to its slot and placed at its start."""
    assert request.segments is not None
    strict = request.strict_duration if request.strict_duration is not None else strict_duration
    parts, warnings, rate = [], [], 0
    try:
        for i, (segment, out) in enumerate(zip(request.segments, outs, strict=True)):
            rate = out.sample_rate
            fitted, _, more = fit(
                from_pcm16(out.pcm16),
                rate,
                target_s=segment.target_duration_s,
                speed=request.speed,
                max_stretch=request.max_stretch or max_stretch,
                strict=strict,
                max_strict_stretch=max_strict_stretch,
            )
            warnings += [f"segments[{i}]: {w}" for w in (*out.warnings, *more)]
            parts.append((fitted, segment.start_s))
        return SynthesisOutput(pcm16(place(parts, rate)), rate, warnings)
    except Exception as exc:
        return exc
