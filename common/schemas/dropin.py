"""The original TTS service's contract (the design card's `/synthesize`), mapped onto ttsq jobs.

The dubbing worker's client sends one request per segment, waits up to 600 s, and sends the
same request again after any answer but 200. So a request becomes an ordinary ttsq job, and a
repeat of it joins that job instead of making a second: the request's fingerprint names the
job. The fingerprint leaves out what changes between two sends of one request: the query
string of `prompt_audio_url` (a presigned URL is signed anew each time), so two sends of the
same segment are one job.

Unknown fields are ignored, as the original did; a bad value is a 400 (its status for
validation) in ttsq's error envelope.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from common.schemas.job_request import (
    LANGUAGES,
    VOICE_ID_PATTERN,
    Factor,
    HttpUrlText,
    JobRequest,
    Language,
    Segment,
)


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ProsodyControl(Lenient):
    speed: Factor = 1.0
    pitch: Factor = 1.0
    energy: Factor = 1.0


class TimedSegment(Lenient):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    target_duration_ms: Annotated[int, Field(gt=0, le=600_000)]
    start_time_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 0


class TimeConstraints(Lenient):
    segments: Annotated[list[TimedSegment], Field(min_length=1, max_length=200)]


class SynthesizeRequest(Lenient):
    """`POST /synthesize`, as the dubbing worker sends it."""

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    speaker_id: Annotated[str, StringConstraints(pattern=VOICE_ID_PATTERN)] = "default"
    prompt_audio_url: HttpUrlText | None = None
    target_duration_ms: Annotated[int, Field(gt=0, le=600_000)] | None = None
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] = "en"
    prosody_control: ProsodyControl | None = None
    time_constraints: TimeConstraints | None = None
    output_format: Literal["wav", "mp3"] = "wav"
    sample_rate: Annotated[int, Field(ge=8000, le=48000)] | None = None
    tts_backend: str | None = None
    indextts_gradio_url: str | None = None
    strict_duration: bool | None = None


class SynthesizeResponse(BaseModel):
    audio_url: str
    duration_ms: int
    sample_rate: int
    format: str
    file_size: int
    #: What the answer differs in from the request: a prompt the engine ignored, a stretch
    #: capped, a slot missed (also in the `X-TTS-Warnings` header).
    warnings: list[str] = Field(default_factory=list)


class BatchRequest(Lenient):
    """`POST /synthesize/batch`: several segments; `merge` also joins them into one track."""

    requests: Annotated[list[SynthesizeRequest], Field(min_length=1, max_length=200)]
    merge: bool = True


class BatchSegment(BaseModel):
    idx: int
    duration_ms: int
    audio_url: str


class BatchResponse(BaseModel):
    #: The merged track (None without `merge`).
    audio_url: str | None
    duration_ms: int
    segments: list[BatchSegment]


class TrackMerge(BaseModel):
    """What the API asks the I/O worker to join, end to end, into one stored track: the
    succeeded jobs of a `/synthesize/batch` with `merge` (`io_worker/merge.py`)."""

    owner: str
    job_ids: list[str]


class Speaker(BaseModel):
    id: str
    name: str
    language: str | None = None
    gender: str | None = None


class Speakers(BaseModel):
    speakers: list[Speaker]


def fingerprint(body: SynthesizeRequest) -> str:
    """The same for two sends of one request, whatever their presigned query strings."""
    canonical = body.model_dump(mode="json", exclude={"indextts_gradio_url"})
    if body.prompt_audio_url:
        where = urlsplit(body.prompt_audio_url)._replace(query="", fragment="")
        canonical["prompt_audio_url"] = where.geturl()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def to_job(body: SynthesizeRequest, caller: str | None = None) -> JobRequest:
    """The job for one segment; `caller` is the Basic auth user name, kept in metadata."""
    prosody = body.prosody_control or ProsodyControl()
    segments = None
    if body.time_constraints is not None:
        segments = [
            Segment(
                text=s.text,
                target_duration_s=s.target_duration_ms / 1000,
                start_s=s.start_time_ms / 1000,
            )
            for s in body.time_constraints.segments
        ]
    return JobRequest(
        text=body.text,
        voice=None if body.prompt_audio_url or body.speaker_id == "default" else body.speaker_id,
        voice_url=body.prompt_audio_url,
        language=cast(Language, body.language) if body.language in LANGUAGES else None,
        format=body.output_format,
        sample_rate=body.sample_rate,
        speed=None if prosody.speed == 1.0 else prosody.speed,
        pitch=None if prosody.pitch == 1.0 else prosody.pitch,
        energy=None if prosody.energy == 1.0 else prosody.energy,
        target_duration_s=body.target_duration_ms / 1000 if body.target_duration_ms else None,
        strict_duration=body.strict_duration,
        segments=segments,
        metadata={
            "route": "synthesize",
            "speaker_id": body.speaker_id,
            "language": body.language,
            **({"caller": caller} if caller else {}),
        },
        on_unsupported="ignore",
    )


def same_backend(asked: str, running: str) -> bool:
    """`index_tts2`, `IndexTTS2` and `indextts-2` all name one engine."""

    def norm(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower())

    return norm(asked) == norm(running)
