"""A job as stored (`JobRecord`) and as a client sees it (`JobResource`), and its states."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from common.schemas.job_request import AudioFormat, JobId, JobRequest, Priority


class JobStatus(StrEnum):
    #: Accepted and waiting in the queue for a synthesis worker.
    queued = "queued"
    #: A worker holds it: synthesising, then uploading the audio.
    running = "running"
    #: The audio is in storage; `audio.url` fetches it.
    succeeded = "succeeded"
    #: It ended without audio; `error` says why.
    failed = "failed"
    #: A client canceled it; any audio made for it was discarded.
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        return self in {JobStatus.succeeded, JobStatus.failed, JobStatus.canceled}


class Stage(StrEnum):
    #: The engine is making the audio (the GPU is busy with this job).
    synthesizing = "synthesizing"
    #: The audio exists and is on its way to storage (the GPU has moved on).
    uploading = "uploading"


class AudioInfo(BaseModel):
    key: str
    format: AudioFormat = "wav"
    sample_rate: int
    channels: int = 1
    duration_s: float
    size_bytes: int
    sha256: str
    #: Output duration over the engine's: below 1 sped up, above 1 slowed down.
    stretch: float | None = None
    #: Integrated loudness (LUFS) and true peak (dBTP), measured on the delivered file.
    loudness: float | None = None
    peak: float | None = None


class Metrics(BaseModel):
    #: Seconds from acceptance to the start of the (last) synthesis.
    queue_s: float | None = None
    #: Seconds the engine spent on this job.
    synth_s: float | None = None
    #: Real-time factor: synth_s / duration_s (below 1 is faster than real time).
    rtf: float | None = None
    #: Engine (GPU) seconds this job used, over every attempt that produced audio.
    gpu_s: float | None = None


class Progress(BaseModel):
    """How far the engine is through a job, where it can tell: a timed script's segments, or
    the segments IndexTTS2 cuts a long text into."""

    #: Segments finished.
    done: int
    #: Segments in all.
    total: int


class ErrorInfo(BaseModel):
    code: str
    message: str
    #: Whether the same request may succeed later (the server gave up on a transient fault:
    #: storage down past the retries, an engine that kept failing) or never will (the input
    #: is wrong). Set from the error's class (`TtsqError.retryable`) when the job fails; None
    #: on a job failed by a version before it, read as retryable.
    retryable: bool | None = None


class JobRecord(BaseModel):
    """What the job store keeps per job; never sent to clients as is."""

    id: JobId
    owner: str
    status: JobStatus = JobStatus.queued
    stage: Stage | None = None
    request: JobRequest
    created_at: datetime
    started_at: datetime | None = None
    stage_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    #: How many times a worker started it (crashes and transient errors start it again).
    attempts: int = 0
    #: The worker instance holding it while running.
    worker: str | None = None
    #: While uploading: the upload in flight renews this before it passes; the sweeper sends
    #: the upload again only after it has passed (so a slow attempt is never doubled).
    lease_until: datetime | None = None
    #: While uploading: the synthesis worker making the upload's attempt itself (its engine
    #: was idle). That attempt ends with its heartbeat, not only with the lease. None: the
    #: I/O worker's, bounded by the lease.
    uploader: str | None = None
    audio: AudioInfo | None = None
    #: Only while synthesizing, and only from an engine that can tell (`JobStore.note_progress`).
    progress: Progress | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    error: ErrorInfo | None = None
    warnings: list[str] = Field(default_factory=list)
    #: The batch this job is an item of, and the client's `ref` for it.
    batch_id: str | None = None
    ref: str | None = None
    #: The result cache's key for this job's audio (None: not cacheable), and whether its
    #: audio is a copy of an earlier job's, made with no engine call.
    cache_key: str | None = None
    cached: bool = False


class JobUrls(BaseModel):
    self: str
    audio: str
    cancel: str


class PublicAudio(BaseModel):
    url: str
    format: str
    sample_rate: int
    channels: int = 1
    duration_s: float
    size_bytes: int
    sha256: str
    stretch: float | None = None
    loudness: float | None = None
    peak: float | None = None
    url_expires_at: datetime


class JobResource(BaseModel):
    """A job as a client sees it (`GET /v1/jobs/{id}`)."""

    id: str
    status: JobStatus
    stage: Stage | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    queue_position: int | None = Field(
        default=None,
        description="Only while queued: how many queued jobs will start before this one "
        "(0: it is next): every queued job of a higher priority (an interactive job is ahead "
        "of every batch job), and those of its own priority accepted before it. Jobs running "
        "now are not counted. Workers take jobs in this order, except for a job put back in "
        "the queue (its worker died, or the engine failed transiently): it keeps its place "
        "here, by acceptance time, while its new message goes to the back of its priority's "
        "queue, possibly after a delay, so it can start later than its position says; and an "
        "interactive job accepted later overtakes a queued batch job, so a batch job's "
        "position can grow.",
    )
    eta_s: float | None = Field(
        default=None,
        description="Only while queued: a rough estimate of the seconds until it starts, from "
        "the mean engine time of the latest syntheses, its queue_position, the busy and the "
        "ready workers (common/jobs/eta.py); none before any synthesis or with no worker ready.",
    )
    priority: Priority = "interactive"
    #: The audio is a copy of an earlier identical job's: no engine ran for this one.
    cached: bool = False
    attempts: int
    input: JobRequest
    urls: JobUrls
    audio: PublicAudio | None = None
    progress: Progress | None = Field(
        default=None,
        description="Only while synthesizing: segments done of total, e.g. "
        '{"done": 3, "total": 10}, for a timed script (`segments`) or a text the engine cuts '
        "into segments (IndexTTS2); none where the engine cannot tell. Updated at most about "
        "twice a second, so it can lag a segment behind.",
    )
    metrics: Metrics
    error: ErrorInfo | None = None
    warnings: list[str]


class JobList(BaseModel):
    data: list[JobResource]
    next_cursor: str | None
