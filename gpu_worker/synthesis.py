"""One synthesis: claim the job, run the engine, hand the audio to the uploader.

A plain function; the Celery task is a shell around it and the unit tests call it directly.
Safe to run twice for the same job: `JobStore.claim` lets only one live worker hold it, and a
run that lost its claim (canceled, taken over) discards its audio instead of writing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import redis

from common.audio import from_pcm16, pcm16
from common.capabilities import check as check_capabilities
from common.errors import PermanentError, TransientError
from common.jobstore import ClaimResult, JobStore
from common.resultcache import ResultCache
from common.schemas import JobRecord, JobRequest, JobStatus
from common.wav import encode_wav
from gpu_worker.cached import serve_from_cache
from gpu_worker.engines.base import Engine, ProgressListener, SynthesisOutput, progress_to
from gpu_worker.joblog import job_log
from gpu_worker.postprocess import fit, place
from gpu_worker.progress import JobProgress
from gpu_worker.uploaded_voices import UploadedVoices, resolve_references
from gpu_worker.url_voices import UrlVoices


class Next(StrEnum):
    #: Nothing more to do for this message.
    done = "done"
    #: The audio waits in the hand-off; send an upload task.
    upload = "upload"
    #: The job went back to the queue, in the outbox: the sweeper sends it after `retry_in`
    #: seconds (never a delayed message, which a dead worker would hold unacked for hours).
    retry = "retry"


@dataclass
class SynthesisOutcome:
    next: Next
    retry_in: float = 0.0


def backoff(attempt: int, base: float, cap: float) -> float:
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


@dataclass
class Prepared:
    """A claimed job ready for the engine: its request with reference audio resolved."""

    job: JobRecord
    request: JobRequest


@dataclass
class Spoken:
    """What the engine made of a prepared job: audio, or the error it raised."""

    out: SynthesisOutput | None
    error: Exception | None
    synth_s: float


def run_synthesis(
    job_id: str,
    *,
    store: JobStore,
    engine: Engine,
    instance: str,
    is_alive: Callable[[str], bool],
    max_attempts: int,
    upload_lease_s: float = 20.0,
    retry_base_s: float = 1.0,
    url_voices: UrlVoices | None = None,
    max_stretch: float = 1.5,
    uploaded_voices: UploadedVoices | None = None,
    results: ResultCache | None = None,
) -> SynthesisOutcome:
    """The three steps one after another (the worker runs them on three threads at once,
    `gpu_worker/pipeline.py`)."""
    prepared = prepare(
        job_id,
        store=store,
        engine=engine,
        instance=instance,
        is_alive=is_alive,
        max_attempts=max_attempts,
        retry_base_s=retry_base_s,
        url_voices=url_voices,
        uploaded_voices=uploaded_voices,
        results=results,
    )
    if isinstance(prepared, SynthesisOutcome):
        return prepared
    spoken = speak_job(prepared, engine, store=store, instance=instance, max_stretch=max_stretch)
    return finish(
        prepared,
        spoken,
        store=store,
        instance=instance,
        max_attempts=max_attempts,
        upload_lease_s=upload_lease_s,
        retry_base_s=retry_base_s,
    )


def prepare(
    job_id: str,
    *,
    store: JobStore,
    engine: Engine,
    instance: str,
    is_alive: Callable[[str], bool],
    max_attempts: int,
    retry_base_s: float = 1.0,
    url_voices: UrlVoices | None = None,
    uploaded_voices: UploadedVoices | None = None,
    results: ResultCache | None = None,
) -> Prepared | SynthesisOutcome:
    """Claim the job and get everything but the engine done: its capabilities checked, its
    reference audio fetched, the result cache asked. An outcome when nothing is left to run."""
    log = job_log(__name__, job_id)
    claim = store.claim(job_id, instance, is_alive=is_alive, max_attempts=max_attempts)
    if claim.result == ClaimResult.exhausted:
        log.error("failed: started %s times without finishing", max_attempts)
        return SynthesisOutcome(Next.done)
    if claim.result != ClaimResult.run or claim.job is None:
        log.info("skipped: already ended, held by a live worker, or gone")
        return SynthesisOutcome(Next.done)
    job = claim.job
    log.info("synthesising (attempt %s of %s)", job.attempts, max_attempts)
    try:
        check_capabilities(job.request, engine.capabilities())
        request = resolve_references(
            job.request, job.owner, engine, url_voices=url_voices, uploaded=uploaded_voices
        )
        if results is not None and serve_from_cache(results, store, job, request, engine, instance):
            return SynthesisOutcome(Next.done)
    except Exception as exc:
        return _settle(exc, store, job, instance, max_attempts, retry_base_s)
    return Prepared(job, request)


def speak_job(
    prepared: Prepared, engine: Engine, *, store: JobStore, instance: str, max_stretch: float
) -> Spoken:
    """Run the engine on a prepared job; never raises (the error is in what it returns).

    A job prepared while the engine ran the one before may have been canceled (or taken over)
    meanwhile: one read first, so it never reaches the engine (`Spoken` with neither audio nor
    error)."""
    job = prepared.job
    try:
        now = store.get(job.id)
        wanted = now is not None and now.status == JobStatus.running and now.worker == instance
    except redis.RedisError:
        wanted = True  # cannot tell: run it, and `finish` finds out
    if not wanted:
        return Spoken(None, None, 0.0)
    started = time.perf_counter()
    try:
        progress = JobProgress(store, job.id, instance)
        out = speak(prepared.request, engine, max_stretch=max_stretch, progress=progress)
    except Exception as exc:
        return Spoken(None, exc, time.perf_counter() - started)
    return Spoken(out, None, time.perf_counter() - started)


def finish(
    prepared: Prepared,
    spoken: Spoken,
    *,
    store: JobStore,
    instance: str,
    max_attempts: int,
    upload_lease_s: float = 20.0,
    retry_base_s: float = 1.0,
) -> SynthesisOutcome:
    """Hand the audio to the uploader (the job moves to `uploading`), or settle the error."""
    job, out = prepared.job, spoken.out
    log = job_log(__name__, job.id)
    if spoken.error is not None:
        return _settle(spoken.error, store, job, instance, max_attempts, retry_base_s)
    if out is None:
        log.info("not synthesised: canceled or taken over before the engine reached it")
        return SynthesisOutcome(Next.done)
    wav = encode_wav(out.pcm16, out.sample_rate)
    if not store.mark_synthesized(
        job.id,
        instance,
        wav,
        synth_s=spoken.synth_s,
        duration_s=out.duration_s,
        warnings=out.warnings,
        upload_lease_s=upload_lease_s,
    ):
        log.info("audio discarded: the job was canceled or taken over meanwhile")
        return SynthesisOutcome(Next.done)
    log.info("synthesised %.2fs of audio in %.2fs", out.duration_s, spoken.synth_s)
    return SynthesisOutcome(Next.upload)


def _settle(
    exc: Exception,
    store: JobStore,
    job: JobRecord,
    instance: str,
    max_attempts: int,
    retry_base_s: float,
) -> SynthesisOutcome:
    """A job that raised: failed for good, or back in the queue for another attempt."""
    if isinstance(exc, PermanentError):
        job_log(__name__, job.id).warning("failed: %s (%s)", exc.message, exc.code)
        store.fail(job.id, exc.code, exc.message)
        return SynthesisOutcome(Next.done)
    if isinstance(exc, TransientError):
        code, message = exc.code, exc.message
    else:
        # An engine bug or crash we cannot classify: logged in full here, retried a bounded
        # number of times, then visible as `engine_error`; never a traceback to the client.
        job_log(__name__, job.id).error("engine raised", exc_info=exc)
        code, message = "engine_error", "the speech engine failed on this job"
    return _retry_or_fail(
        store, job.id, instance, job.attempts, max_attempts, code, message, retry_base_s
    )


def speak(
    request: JobRequest,
    engine: Engine,
    *,
    max_stretch: float,
    progress: ProgressListener | None = None,
) -> SynthesisOutput:
    """Run the engine for one job (its reference audio already resolved): a timed script
    spoken segment by segment, each fitted to its slot and placed at its start.

    `progress` hears segments done of total: the script's, or else the engine's own.
    """
    if not request.segments:
        with progress_to(progress):
            return engine.synthesize(request)
    parts, warnings, rate = [], [], 0
    total = len(request.segments)
    if progress is not None:
        progress(0, total)
    for i, segment in enumerate(request.segments):
        out = engine.synthesize(request.model_copy(update={"text": segment.text, "segments": None}))
        rate = out.sample_rate
        fitted, _, more = fit(
            from_pcm16(out.pcm16),
            rate,
            target_s=segment.target_duration_s,
            speed=request.speed,
            max_stretch=request.max_stretch or max_stretch,
        )
        warnings += [f"segments[{i}]: {w}" for w in (*out.warnings, *more)]
        parts.append((fitted, segment.start_s))
        if progress is not None:
            progress(i + 1, total)
    return SynthesisOutput(pcm16(place(parts, rate)), rate, warnings)


def _retry_or_fail(
    store: JobStore,
    job_id: str,
    instance: str,
    attempts: int,
    max_attempts: int,
    code: str,
    message: str,
    retry_base_s: float,
) -> SynthesisOutcome:
    log = job_log(__name__, job_id)
    if attempts >= max_attempts:
        log.error("failed after %s attempts: %s", attempts, message)
        store.fail(job_id, code, f"{message} (after {attempts} attempts)")
        return SynthesisOutcome(Next.done)
    delay = backoff(attempts, retry_base_s, 30.0)
    if not store.requeue(job_id, only_from=instance, delay_s=delay):
        return SynthesisOutcome(Next.done)
    log.warning("%s; back in the queue, retry in %.1fs", message, delay)
    return SynthesisOutcome(Next.retry, retry_in=delay)
