"""One upload: move a job's audio from the Redis hand-off into storage, then end the job.

Runs on the I/O worker, never between two syntheses; `store_audio`, the attempt itself, also
runs in a synthesis process whose engine has no job waiting (`Synthesizer.upload_here`, its
first attempt only). Storage errors are retried with backoff; after the configured number of
attempts the job fails with `storage_unavailable`. Safe to run twice: the object key derives
from the job id and only one run can mark the job succeeded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from common.audio.deliver import deliver
from common.errors import PermanentError, StorageUnavailable
from common.jobs.store import JobStore
from common.resultcache import ResultCache
from common.retry import Retry
from common.schemas.jobs import AudioInfo, JobRecord, JobStatus, Stage
from common.settings import Settings
from common.storage import Storage, audio_key
from common.worker.joblog import job_log


@dataclass
class UploadOutcome:
    #: Seconds until the next attempt; None when this job needs no more uploads.
    retry_in: float | None = None
    #: The audio was lost before it reached storage; the job is queued for synthesis again.
    resynthesize: bool = False


@dataclass(frozen=True)
class UploadPolicy:
    """How uploads are tried (the TTS_UPLOAD_* settings)."""

    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    #: How long one attempt may take: the sweeper waits that long before sending it again.
    lease_s: float = 60.0
    max_stretch: float = 1.5
    strict_duration: bool = False
    max_strict_stretch: float = 2.5

    @property
    def retry(self) -> Retry:
        return Retry(base_s=self.backoff_s, cap_s=self.backoff_max_s, attempts=self.max_attempts)

    @classmethod
    def of(cls, settings: Settings) -> UploadPolicy:
        return cls(
            max_attempts=settings.upload_max_attempts,
            backoff_s=settings.upload_backoff_s,
            backoff_max_s=settings.upload_backoff_max_s,
            lease_s=settings.upload_lease_s,
            max_stretch=settings.max_stretch,
            strict_duration=settings.strict_duration,
            max_strict_stretch=settings.max_strict_stretch,
        )


@dataclass(frozen=True)
class UploadHere:
    """The upload's first attempt made by a synthesis process whose engine has nothing else
    to do (`Synthesizer.upload_here`): `store_audio` on the audio it has in hand."""

    store: JobStore
    storage: Storage
    policy: UploadPolicy

    def __call__(self, job: JobRecord, wav: bytes) -> UploadOutcome:
        return store_audio(
            job, wav, store=self.store, storage=self.storage, attempt=0, policy=self.policy
        )


def run_upload(
    job_id: str, *, store: JobStore, storage: Storage, attempt: int, policy: UploadPolicy
) -> UploadOutcome:
    """One attempt.

    The hand-off holds the engine's WAV; it is delivered as the job asked (format, rate,
    speed, target duration: `postprocess.deliver`) on every attempt, so nothing but the
    engine's own output ever waits in Redis.
    """
    job = store.touch_upload(job_id, policy.lease_s)
    if job is None:
        return UploadOutcome()
    data = store.handoff_audio(job_id)
    if data is None:
        job_log(__name__, job_id).warning("hand-off audio missing; synthesising again")
        requeued = store.requeue(job_id, stage=Stage.uploading)
        return UploadOutcome(resynthesize=requeued)
    return store_audio(job, data, store=store, storage=storage, attempt=attempt, policy=policy)


def store_audio(
    job: JobRecord,
    data: bytes,
    *,
    store: JobStore,
    storage: Storage,
    attempt: int,
    policy: UploadPolicy,
) -> UploadOutcome:
    """The attempt itself, on a job whose upload this caller holds (its lease is current)
    and the engine's WAV `data`: deliver it, put it in storage, end the job."""
    job_id = job.id
    log = job_log(__name__, job_id)
    try:
        out = deliver(
            data,
            job.request,
            max_stretch=policy.max_stretch,
            strict_duration=policy.strict_duration,
            max_strict_stretch=policy.max_strict_stretch,
        )
    except PermanentError as exc:
        log.error("failed: post-processing: %s", exc.message)
        store.fail(
            job_id,
            "postprocess_failed",
            f"the audio could not be delivered: {exc.message}",
            retryable=exc.retryable,
        )
        return UploadOutcome()
    key = audio_key(job_id, out.format)
    try:
        storage.put(key, out.data, out.content_type)
    except StorageUnavailable as exc:
        if policy.retry.exhausted(attempt + 1):
            log.error("failed: %s, %s attempts", exc.message, attempt + 1)
            store.fail(
                job_id,
                "storage_unavailable",
                f"storage did not accept the audio after {attempt + 1} attempts",
                retryable=True,
            )
            return UploadOutcome()
        delay = policy.retry.delay(attempt + 1)
        log.warning("%s; upload attempt %s, retry in %.1fs", exc.message, attempt + 1, delay)
        store.touch_upload(job_id, delay + policy.lease_s)  # the wait is not a stall
        return UploadOutcome(retry_in=delay)
    info = AudioInfo(
        key=key,
        format=out.format,  # type: ignore[arg-type]
        sample_rate=out.sample_rate,
        channels=out.channels,
        duration_s=out.duration_s,
        size_bytes=len(out.data),
        sha256=hashlib.sha256(out.data).hexdigest(),
        stretch=out.stretch,
        loudness=out.loudness,
        peak=out.peak,
    )
    succeeded = store.mark_succeeded(job_id, info, warnings=out.warnings)
    if succeeded is not None:
        log.info("succeeded: %s bytes at %s", len(out.data), key)
        ResultCache(store.redis, storage).remember(succeeded, store.clock())
        return UploadOutcome()
    after = store.get(job_id)
    if after is None or after.status != JobStatus.succeeded:
        log.info("canceled while uploading; removing %s", key)
        try:
            storage.delete(key)
        except StorageUnavailable as exc:
            log.warning("%s; the sweeper will delete %s later", exc.message, key)
            store.note_orphan_object(key)
    return UploadOutcome()
