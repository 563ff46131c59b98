"""Turning stored job records into what clients see, with fresh URLs on every read."""

from __future__ import annotations

from datetime import timedelta

from common.jobs.order import priority_of
from common.jobs.store import utcnow
from common.schemas.jobs import JobRecord, JobResource, JobStatus, JobUrls, PublicAudio
from common.settings import Settings
from common.storage import LocalStorage, S3Storage


def job_resource(
    job: JobRecord,
    *,
    settings: Settings,
    storage: LocalStorage | S3Storage,
    queue_position: int | None,
    eta_s: float | None = None,
) -> JobResource:
    base = f"{settings.base_url}/v1/jobs/{job.id}"
    audio = None
    if job.status == JobStatus.succeeded and job.audio is not None:
        audio = PublicAudio(
            url=storage.url(job.audio.key, settings.url_ttl_s),
            url_expires_at=utcnow() + timedelta(seconds=settings.url_ttl_s),
            **job.audio.model_dump(exclude={"key"}),
        )
    return JobResource(
        id=job.id,
        status=job.status,
        stage=job.stage,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
        queue_position=queue_position if job.status == JobStatus.queued else None,
        eta_s=eta_s if job.status == JobStatus.queued else None,
        priority=priority_of(job.request),
        cached=job.cached,
        attempts=job.attempts,
        input=job.request,
        urls=JobUrls(self=base, audio=f"{base}/audio", cancel=f"{base}/cancel"),
        audio=audio,
        progress=job.progress,
        metrics=job.metrics,
        error=job.error,
        warnings=job.warnings,
    )
