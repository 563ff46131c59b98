"""One synthesis: claim the job, run the engine, hand the audio to the uploader.

Plain code (`Synthesizer`); the Celery task and the pipeline's threads are shells around its
steps, and the unit tests call `run_synthesis` directly.
Safe to run twice for the same job: `JobStore.claim` lets only one live worker hold it, and a
run that lost its claim (canceled, taken over) discards its audio instead of writing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis

from common.audio.wav import encode_wav
from common.capabilities import admit
from common.errors import PermanentError, TransientError
from common.jobs.store import ClaimResult, JobStore, Message
from common.resultcache import ResultCache
from common.retry import Retry
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord, JobStatus
from common.worker.joblog import job_log
from gpu_worker.ends_heard import EndsHeard
from gpu_worker.engines.base import Engine, SynthesisOutput
from gpu_worker.progress import JobProgress
from gpu_worker.reuse import serve_from_cache
from gpu_worker.speech import speak_many
from gpu_worker.uploaded_voices import UploadedVoices, resolve_references
from gpu_worker.url_voices import UrlVoices

if TYPE_CHECKING:
    from common.worker.delivery import UploadHere  # it imports `backoff` from here


class Next(StrEnum):
    #: Nothing more to do for this message.
    done = "done"
    #: The audio waits in the hand-off; send an upload task.
    upload = "upload"
    #: The audio waits in the hand-off, and its upload task was sent with it.
    uploading = "uploading"
    #: The job went back to the queue, in the outbox: the sweeper sends it after `retry_in`
    #: seconds (never a delayed message, which a dead worker would hold unacked for hours).
    retry = "retry"


@dataclass
class SynthesisOutcome:
    next: Next
    retry_in: float = 0.0


@dataclass
class Prepared:
    """A claimed job ready for the engine: its request with reference audio resolved."""

    job: JobRecord
    request: JobRequest
    #: What the engine ignored of the job's request (`on_unsupported: ignore`).
    warnings: list[str] = field(default_factory=list)
    #: When the claim was asked for (`time.monotonic`): the job is known as it was then.
    claimed_at: float = field(default_factory=time.monotonic)


#: A job the engine takes within this many seconds of its claim is not read again first: the
#: claim is that read (one job at a time, the engine takes it at once).
FRESH_CLAIM_S = 0.1


@dataclass
class Spoken:
    """What the engine made of a prepared job: audio, or the error it raised."""

    out: SynthesisOutput | None
    error: Exception | None
    synth_s: float


@dataclass
class Synthesizer:
    """What a synthesis worker holds for every job, and the three steps of one job: `prepare`
    (claim it, resolve its voices, ask the result cache), `speak_job` (the engine), and
    `finish` (hand the audio to the uploader, or settle the error). The worker runs the steps
    on three threads at once (`gpu_worker/pipeline.py`); `run` runs them one after another."""

    store: JobStore
    engine: Engine
    instance: str
    is_alive: Callable[[str], bool]
    max_attempts: int
    upload_lease_s: float = 20.0
    retry_base_s: float = 1.0
    max_stretch: float = 1.5
    #: TTS_STRICT_DURATION and TTS_MAX_STRICT_STRETCH, for a timed script's segments.
    strict_duration: bool = False
    max_strict_stretch: float = 2.5
    url_voices: UrlVoices | None = None
    uploaded_voices: UploadedVoices | None = None
    results: ResultCache | None = None
    #: The upload task's message (`queue.upload_message`), pushed in the transaction that
    #: hands the audio over; without it `finish` says `Next.upload` and the caller sends it.
    upload_message: Message | None = None
    #: The upload's first attempt run here, used instead of the I/O worker when
    #: `engine_idle` says the engine has no job waiting: one job at a time, the second Celery
    #: delivery and its reads were a tenth of the overhead (bench/overhead.py). Under load the
    #: engine always has the next job, and the I/O worker uploads.
    upload_here: UploadHere | None = None
    engine_idle: Callable[[], bool] = lambda: False
    #: TTS_ENGINE_BATCH: engine calls given to the engine at once (`gpu_worker/speech.py`).
    engine_batch: int = 1
    #: The ends announced while jobs wait for the engine (`gpu_worker/ends_heard.py`): asked
    #: instead of reading a waiting job before the engine takes it, where it can tell.
    ends: EndsHeard | None = None

    def run(self, job_id: str) -> SynthesisOutcome:
        prepared = self.prepare(job_id)
        if isinstance(prepared, SynthesisOutcome):
            return prepared
        return self.finish(prepared, self.speak_job(prepared))

    def prepare(self, job_id: str) -> Prepared | SynthesisOutcome:
        """Claim the job and get everything but the engine done: its capabilities checked,
        its reference audio fetched, the result cache asked. An outcome when nothing is left
        to run."""
        log = job_log(__name__, job_id)
        store, engine, instance = self.store, self.engine, self.instance
        asked = time.monotonic()
        claim = store.claim(
            job_id, instance, is_alive=self.is_alive, max_attempts=self.max_attempts
        )
        if claim.result == ClaimResult.exhausted:
            log.error("failed: started %s times without finishing", self.max_attempts)
            return SynthesisOutcome(Next.done)
        if claim.result != ClaimResult.run or claim.job is None:
            log.info("skipped: already ended, held by a live worker, or gone")
            return SynthesisOutcome(Next.done)
        job = claim.job
        log.info("synthesising (attempt %s of %s)", job.attempts, self.max_attempts)
        try:
            admitted, ignored = admit(job.request, engine.capabilities())
            request = resolve_references(
                admitted,
                job.owner,
                engine,
                url_voices=self.url_voices,
                uploaded=self.uploaded_voices,
            )
            results = self.results
            if results is not None and serve_from_cache(
                results, store, job, request, engine, instance
            ):
                return SynthesisOutcome(Next.done)
        except Exception as exc:
            return self._settle(exc, job)
        return Prepared(job, request, warnings=ignored, claimed_at=asked)

    def speak_job(self, prepared: Prepared) -> Spoken:
        return self.speak_jobs([prepared])[0]

    def speak_jobs(self, batch: Sequence[Prepared]) -> list[Spoken]:
        """Run the engine on prepared jobs, `engine_batch` engine calls at a time; never
        raises (each job's error is in what it returns). Each job's `synth_s` is the time the
        engine took for the whole batch: the jobs shared it.

        A job prepared while the engine ran the one before may have been canceled (or taken
        over) meanwhile: then it never reaches the engine (`Spoken` with neither audio nor
        error). `_still_ours` tells, with no round trip where the ends heard can."""
        now = time.monotonic()
        live = [p for p in batch if self._still_ours(p, now)]
        started = time.perf_counter()
        try:
            outs: list[SynthesisOutput | Exception] = speak_many(
                [p.request for p in live],
                self.engine,
                batch=self.engine_batch,
                max_stretch=self.max_stretch,
                strict_duration=self.strict_duration,
                max_strict_stretch=self.max_strict_stretch,
                progress=[JobProgress(self.store, p.job.id, self.instance) for p in live],
            )
        except Exception as exc:  # a bug outside any one job: every job of the batch has it
            outs = [exc] * len(live)
        took = time.perf_counter() - started
        spoken = {
            id(p): Spoken(None, out, took)
            if isinstance(out, Exception)
            else Spoken(out, None, took)
            for p, out in zip(live, outs, strict=True)
        }
        return [spoken.get(id(p), Spoken(None, None, 0.0)) for p in batch]

    def _still_ours(self, prepared: Prepared, now: float) -> bool:
        """Not for a job claimed just now (`FRESH_CLAIM_S`: the claim is that read); else what
        the ends heard say (`EndsHeard.ended`), or where they cannot tell, one read."""
        if now - prepared.claimed_at <= FRESH_CLAIM_S:
            return True
        ended = self.ends.ended(prepared.job.id, prepared.claimed_at) if self.ends else None
        if ended is not None:
            return not ended
        try:
            job = self.store.get(prepared.job.id)
        except redis.RedisError:
            return True  # cannot tell: run it, and `finish` finds out
        return job is not None and job.status == JobStatus.running and job.worker == self.instance

    def finish(self, prepared: Prepared, spoken: Spoken) -> SynthesisOutcome:
        """Hand the audio to the uploader (the job moves to `uploading`), or settle the
        error."""
        job, out = prepared.job, spoken.out
        log = job_log(__name__, job.id)
        if spoken.error is not None:
            return self._settle(spoken.error, job)
        if out is None:
            log.info("not synthesised: canceled or taken over before the engine reached it")
            return SynthesisOutcome(Next.done)
        wav = encode_wav(out.pcm16, out.sample_rate)
        here = self.upload_here if self.upload_here is not None and self.engine_idle() else None
        if not self.store.mark_synthesized(
            job.id,
            self.instance,
            wav,
            synth_s=spoken.synth_s,
            duration_s=out.duration_s,
            warnings=[*prepared.warnings, *out.warnings],
            # Run here, the attempt holds the upload's lease from now (the sweeper resends it
            # if this process dies in it); for the I/O worker, until its task starts.
            upload_lease_s=self.upload_lease_s if here is None else here.policy.lease_s,
            message=self.upload_message if here is None else None,
            uploading_here=here is not None,
        ):
            log.info("audio discarded: the job was canceled or taken over meanwhile")
            return SynthesisOutcome(Next.done)
        log.info("synthesised %.2fs of audio in %.2fs", out.duration_s, spoken.synth_s)
        if here is not None:
            return _upload_here(here, job, wav)
        return SynthesisOutcome(Next.upload if self.upload_message is None else Next.uploading)

    def _settle(self, exc: Exception, job: JobRecord) -> SynthesisOutcome:
        """A job that raised: failed for good, or back in the queue for another attempt."""
        log = job_log(__name__, job.id)
        if isinstance(exc, PermanentError):
            log.warning("failed: %s (%s)", exc.message, exc.code)
            self.store.fail(job.id, exc.code, exc.message, retryable=exc.retryable)
            return SynthesisOutcome(Next.done)
        if isinstance(exc, TransientError):
            code, message = exc.code, exc.message
        else:
            # An engine bug or crash we cannot classify: logged in full here, retried a bounded
            # number of times, then visible as `engine_error`; never a traceback to the client.
            log.error("engine raised", exc_info=exc)
            code, message = "engine_error", "the speech engine failed on this job"
        if job.attempts >= self.max_attempts:
            log.error("failed after %s attempts: %s", job.attempts, message)
            self.store.fail(
                job.id, code, f"{message} (after {job.attempts} attempts)", retryable=True
            )
            return SynthesisOutcome(Next.done)
        delay = Retry(base_s=self.retry_base_s, cap_s=30.0).delay(job.attempts)
        if not self.store.requeue(job.id, only_from=self.instance, delay_s=delay):
            return SynthesisOutcome(Next.done)
        log.warning("%s; back in the queue, retry in %.1fs", message, delay)
        return SynthesisOutcome(Next.retry, retry_in=delay)


def _upload_here(here: UploadHere, job: JobRecord, wav: bytes) -> SynthesisOutcome:
    """One attempt in this process; anything short of an ended job goes to the I/O worker
    (`Next.upload`), which makes its own attempts with back-off. The hand-off holds the audio
    meanwhile, and the lease covers a process that dies in the attempt."""
    try:
        outcome = here(job, wav)
    except Exception:
        job_log(__name__, job.id).exception("upload here failed; the I/O worker uploads")
        return SynthesisOutcome(Next.upload)
    return SynthesisOutcome(Next.done if outcome.retry_in is None else Next.upload)


def run_synthesis(job_id: str, **worker: Any) -> SynthesisOutcome:
    """One job, all three steps in turn; `worker` holds `Synthesizer`'s fields (the unit
    tests' entry point)."""
    return Synthesizer(**worker).run(job_id)
