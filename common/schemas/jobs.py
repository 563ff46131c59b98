"""Typed models at every boundary: the request, the stored record, the public resource."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

#: Job ids are 32 lowercase hex characters from `secrets.token_hex(16)`: 128 random bits.
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
#: Voice ids are short names ([A-Za-z0-9._-], no path separators, no leading dot).
VOICE_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$"
VoiceId = Annotated[str, StringConstraints(pattern=VOICE_ID_PATTERN)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: IndexTTS2's eight emotions, in the order its `emo_vector` takes them.
EMOTIONS = ("happy", "angry", "sad", "afraid", "disgusted", "melancholic", "surprised", "calm")
Weight = Annotated[float, Field(ge=0.0, le=1.0)]


class EmotionVector(Strict):
    """Weights of the eight emotions, each 0–1, summing to at most 1 (above 1 the model would
    give the speaker's own emotion a negative weight)."""

    happy: Weight = 0.0
    angry: Weight = 0.0
    sad: Weight = 0.0
    afraid: Weight = 0.0
    disgusted: Weight = 0.0
    melancholic: Weight = 0.0
    surprised: Weight = 0.0
    calm: Weight = 0.0

    @model_validator(mode="after")
    def _sum_at_most_one(self) -> EmotionVector:
        total = sum(self.as_list())
        if total > 1.0 + 1e-9:
            raise ValueError(f"the weights sum to {total:.3g}; the limit is 1")
        return self

    def as_list(self) -> list[float]:
        return [float(getattr(self, name)) for name in EMOTIONS]


class Emotion(Strict):
    """How the line should feel: from a reference audio, a vector, or a description. One source
    at most; `alpha` (0–1) is how strongly it applies."""

    audio: VoiceId | None = None
    #: The emotion reference at an http(s) URL, fetched as `voice_url` is.
    audio_url: HttpUrlText | None = None
    alpha: Weight | None = None
    vector: EmotionVector | None = None
    text: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
        | None
    ) = None
    random: bool | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Emotion:
        sources = ("audio", "audio_url", "vector", "text")
        given = [n for n in sources if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give one of audio, audio_url, vector or text, not {' and '.join(given)}"
            )
        return self


class Generation(Strict):
    """Sampling and segmentation controls; the ranges are upstream's web UI's."""

    temperature: Annotated[float, Field(ge=0.1, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0, le=100)] | None = None
    num_beams: Annotated[int, Field(ge=1, le=10)] | None = None
    repetition_penalty: Annotated[float, Field(ge=0.1, le=20.0)] | None = None
    length_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    max_mel_tokens: Annotated[int, Field(ge=50, le=1815)] | None = None
    interval_silence: Annotated[int, Field(ge=0, le=5000)] | None = None
    max_text_tokens_per_segment: Annotated[int, Field(ge=20, le=600)] | None = None
    #: IndexTTS-2.5 only: stretch (above 1) or compress the spoken duration.
    duration_factor: Annotated[float, Field(ge=0.5, le=2.0)] | None = None


#: The languages a job can name (for engines that need it told); others detect it.
Language = Literal["zh", "en", "ja", "ar", "es"]
LANGUAGES: tuple[str, ...] = get_args(Language)
#: The sample rates an MP3 stream can carry (MPEG-1, 2 and 2.5 layer III).
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: The sample rates Ogg Opus carries (libsndfile's encoder takes no others).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
#: What a job's audio can be delivered as; `pcm_s16le` is raw little-endian samples, no header.
AudioFormat = Literal["wav", "flac", "mp3", "opus", "pcm_s16le"]
AUDIO_FORMATS: tuple[str, ...] = get_args(AudioFormat)
Factor = Annotated[float, Field(ge=0.5, le=2.0)]
HttpUrlText = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=4096)]
JobEventName = Literal["job.started", "job.succeeded", "job.failed", "job.canceled"]
#: Which jobs a worker takes first: every queued interactive job before any batch job.
Priority = Literal["interactive", "batch"]


class Segment(Strict):
    """One line of a timed script: spoken, fitted to its slot, placed at its start time."""

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    target_duration_s: Annotated[float, Field(gt=0, le=600)] | None = None
    start_s: Annotated[float, Field(ge=0, le=3600)] = 0.0


class JobRequest(Strict):
    """The body of `POST /v1/jobs`. Unknown fields are refused.

    The audio options (`format`, `sample_rate`, `speed`, `pitch`, `energy`,
    `target_duration_s`) are applied after synthesis, off the GPU: time-stretching keeps the
    pitch; a stretch beyond `max_stretch` (or TTS_MAX_STRETCH) either way is capped, and the
    job says by how much it missed its target (unless `strict_duration`: then it is exact).
    """

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    voice: VoiceId | None = None
    #: The speaker's reference audio at an http(s) URL, fetched by the worker under a guard
    #: (public addresses only, size and time limits) and cached by content.
    voice_url: HttpUrlText | None = None
    #: The text's language, for engines that need it (IndexTTS-2.5); others detect it.
    language: Language | None = None
    emotion: Emotion | None = None
    generation: Generation | None = None
    format: AudioFormat = "wav"
    #: Resample the result (soxr, high quality); default: the engine's rate.
    sample_rate: Annotated[int, Field(ge=8000, le=48000)] | None = None
    #: Speaking rate: 1.5 is half again as fast (pitch kept).
    speed: Factor | None = None
    #: Pitch as a frequency ratio: 2.0 is an octave up.
    pitch: Factor | None = None
    #: Loudness as an amplitude ratio: 2.0 is +6 dB (peaks are limited to full scale).
    energy: Factor | None = None
    #: Stretch the result to last this long (within ±2% when the stretch is within bounds).
    target_duration_s: Annotated[float, Field(gt=0, le=600)] | None = None
    max_stretch: Annotated[float, Field(ge=1.0, le=4.0)] | None = None
    #: Last exactly `target_duration_s` (each segment exactly its own), to the sample: short
    #: at the `max_stretch` cap, padded with silence; long, stretched up to
    #: TTS_MAX_STRICT_STRETCH and cut under a fade-out; a warning says which. No target, no
    #: effect. Default: TTS_STRICT_DURATION.
    strict_duration: bool | None = None
    #: 2 delivers the (mono) speech on both channels; default 1.
    channels: Annotated[int, Field(ge=1, le=2)] | None = None
    #: Normalise to this integrated loudness (ITU-R BS.1770, LUFS: -23 broadcast, -16 web)...
    loudness: Annotated[float, Field(ge=-70.0, le=-5.0)] | None = None
    #: ...unless that puts the true peak above this ceiling (dBTP, default -1): then the peak wins.
    true_peak_db: Annotated[float, Field(ge=-20.0, le=0.0)] | None = None
    #: Cut leading and trailing audio quieter than `silence_threshold_db` (dBFS, default -50).
    trim_silence: bool = False
    silence_threshold_db: Annotated[float, Field(ge=-90.0, le=-10.0)] | None = None
    #: A timed script: each segment spoken, fitted to its own target, placed at its start.
    segments: Annotated[list[Segment], Field(min_length=1, max_length=200)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] = Field(
        default_factory=dict
    )
    #: Where to POST signed events (Standard Webhooks), and which (see `common/webhooks.py`).
    webhook_url: HttpUrlText | None = None
    webhook_events: list[JobEventName] | None = None
    #: Default: interactive for a single job, batch for a batch's item (`common/jobs/order.py`).
    priority: Priority | None = None
    #: False: always synthesise afresh, never reuse stored audio (`common/resultcache.py`).
    cache: bool = True
    #: What the running engine cannot do (a voice, reference audio, an emotion control):
    #: `refuse` it with a 422, or `ignore` it, with a warning on the job naming each part
    #: dropped, and speak in the default voice (`common/capabilities.py`). The drop-in routes
    #: send `ignore`: their clients never retry a 4xx.
    on_unsupported: Literal["refuse", "ignore"] = "refuse"

    @model_validator(mode="after")
    def _consistent(self) -> JobRequest:
        if self.voice is not None and self.voice_url is not None:
            raise ValueError("give voice or voice_url, not both")
        rate = self.sample_rate
        if self.format == "mp3" and rate is not None and rate not in MP3_RATES:
            raise ValueError(
                f"sample_rate: MP3 carries {', '.join(map(str, MP3_RATES))} Hz, not {rate}"
            )
        if self.format == "opus" and rate is not None and rate not in OPUS_RATES:
            raise ValueError(
                f"sample_rate: Ogg Opus carries {', '.join(map(str, OPUS_RATES))} Hz, not {rate}"
            )
        if self.loudness is not None and self.energy is not None:
            raise ValueError("energy: give loudness or energy, not both")
        if self.true_peak_db is not None and self.loudness is None:
            raise ValueError("true_peak_db: a ceiling for loudness; give loudness too")
        if self.silence_threshold_db is not None and not self.trim_silence:
            raise ValueError("silence_threshold_db: applies with trim_silence: true")
        if self.trim_silence and self.segments:
            raise ValueError("trim_silence: a timed script keeps its timing; not with segments")
        return self


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


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every 4xx and 5xx answer: `{"error": {"code": ..., "message": ...}}`."""

    error: ErrorBody
