"""Two more drop-in contracts, mapped onto ttsq jobs: OpenAI's speech API and index-tts-vllm's.

- `POST /v1/audio/speech` (OpenAI's; `POST /audio/speech` is index-tts-vllm v1's path for it):
  `{model, input, voice, response_format, speed, instructions}`, answered with the audio.
- `POST /tts_url` (index-tts-vllm v2's): `{text, spk_audio_path, emo_control_method, ...}`,
  answered with a WAV. `spk_audio_path` is a file on that server; here its file stem names a
  voice of the caller's library (or of the engine).

Both contracts name voices that a ttsq deployment may not have (`alloy`, a path on another
machine). A name that is no voice here speaks in the default voice with a warning, and the job
asks the engine to drop (with a warning) what it cannot do (`on_unsupported="ignore"`): these
clients treat any error as a failure, never as advice. Bad values are a 400 naming the field.
Unknown fields are ignored, as both originals do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.held import BadRequest
from common.audio.codec import support
from common.schemas.dropin import Lenient
from common.schemas.job_request import (
    EMOTIONS,
    AudioFormat,
    Emotion,
    EmotionVector,
    Generation,
    JobRequest,
)
from common.storage import CONTENT_TYPES

#: OpenAI's formats, less `aac` (which ttsq does not encode), as ttsq's job formats.
SpeechFormat = Literal["mp3", "opus", "flac", "wav", "pcm"]
JOB_FORMATS: dict[str, AudioFormat] = {
    "mp3": "mp3",
    "opus": "opus",
    "flac": "flac",
    "wav": "wav",
    "pcm": "pcm_s16le",
}
#: OpenAI's raw PCM is 24 kHz 16-bit little-endian and carries no header to say so: its
#: clients play it at 24 kHz, so it is resampled to that.
PCM_RATE = 24000
#: The speaking rates a job can have (`JobRequest.speed`); OpenAI's own are 0.25-4.
SPEED = support(max_stretch=1.0).ranges["speed"]
#: index-tts-vllm's (and IndexTTS2's) default segment length: sent on every request by its
#: clients, so it is passed on only when it differs (an engine without the control would warn).
DEFAULT_TOKENS_PER_SENTENCE = 120
#: How much of a client's string a warning quotes.
_QUOTE = 64

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
ServerPath = Annotated[str, StringConstraints(max_length=4096)]
Weight = Annotated[float, Field(ge=0.0, le=1.0)]


class VoiceRef(Lenient):
    """OpenAI's custom-voice object: `{"id": "voice_1234"}`."""

    id: Annotated[str, StringConstraints(max_length=200)]


class SpeechRequest(Lenient):
    """`POST /v1/audio/speech`: OpenAI's body. `model` is recorded, not used."""

    model: Annotated[str, StringConstraints(max_length=200)] = "tts-1"
    input: Text
    voice: Annotated[str, StringConstraints(max_length=200)] | VoiceRef | None = None
    #: Default: the route's (mp3 as OpenAI's; wav on index-tts-vllm's `/audio/speech`).
    response_format: SpeechFormat | None = None
    speed: Annotated[float, Field(ge=0.25, le=4.0)] = 1.0
    instructions: Annotated[str, StringConstraints(max_length=4096)] | None = None
    #: OpenAI's `sse` (a stream of events) is not served: the answer is the audio itself.
    stream_format: Literal["audio"] | None = None


class TtsUrlRequest(Lenient):
    """`POST /tts_url`: index-tts-vllm v2's body (and v1's `audio_path(s)` for the speaker)."""

    text: Text
    spk_audio_path: ServerPath | None = None
    audio_path: ServerPath | None = None
    audio_paths: list[ServerPath] | None = None
    #: 0: the speaker's own emotion; 1: `emo_ref_path`'s; 2: `emo_vec`; 3: from `emo_text`.
    emo_control_method: Literal[0, 1, 2, 3] = 0
    emo_ref_path: ServerPath | None = None
    emo_weight: Weight = 1.0
    #: happy, angry, sad, afraid, disgusted, melancholic, surprised, calm.
    emo_vec: Annotated[list[Weight], Field(min_length=8, max_length=8)] | None = None
    emo_text: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
        | None
    ) = None
    emo_random: bool = False
    max_text_tokens_per_sentence: Annotated[int, Field(ge=20, le=600)] | None = None

    def speaker_path(self) -> str | None:
        return self.spk_audio_path or self.audio_path or next(iter(self.audio_paths or []), None)


class SpeechVoice(BaseModel):
    id: str
    name: str


class SpeechVoices(BaseModel):
    """`GET /v1/audio/voices`: the engine's voices, then the caller's uploaded ones."""

    voices: list[SpeechVoice]


@dataclass(frozen=True)
class Library:
    """The voices a request can name: the engine's, and the caller's uploads (newest first)."""

    engine: frozenset[str]
    uploaded: tuple[SpeechVoice, ...] = ()

    def find(self, *names: str) -> str | None:
        """The voice (a job's `voice`) that the first matching name names, or None."""
        for name in names:
            if name in self.engine:
                return name
            for voice in self.uploaded:
                if name in (voice.id, voice.name):
                    return voice.id
        return None


@dataclass
class Mapped:
    job: JobRequest
    #: What the route itself changed or ignored, for the answer's `X-TTS-Warnings`.
    warnings: list[str]


def quoted(value: str) -> str:
    return repr(value if len(value) <= _QUOTE else value[:_QUOTE] + "…")


def names_in_path(path: str) -> tuple[str, ...]:
    """The names a server-side path can stand for: its file name, then its stem
    (`/root/index-tts-vllm/examples/voice_01.wav`: `voice_01.wav`, `voice_01`)."""
    base = PurePosixPath(path.replace("\\", "/").split("?")[0]).name
    stem = PurePosixPath(base).stem
    return tuple(dict.fromkeys(n for n in (base, stem) if n))


def speech_job(
    body: SpeechRequest,
    *,
    route: str,
    default_format: SpeechFormat,
    library: Library,
    text_emotion: bool,
) -> Mapped:
    """The job for an OpenAI speech request. `text_emotion`: whether every running engine can
    take an emotion from a description (then `instructions` is one)."""
    warnings: list[str] = []
    asked = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
    voice = library.find(asked) if asked else None
    if asked and voice is None:
        warnings.append(f"voice: {quoted(asked)} is not a voice here; the default voice spoke")
    if not SPEED.min <= body.speed <= SPEED.max:
        raise BadRequest(
            f"speed: {body.speed:g} is outside {SPEED.min:g}-{SPEED.max:g}, the rates ttsq speaks"
        )
    emotion = None
    if body.instructions and text_emotion:
        if len(body.instructions) > 500:
            raise BadRequest(
                f"instructions: {len(body.instructions)} characters, the limit is 500 "
                "(they set the emotion)"
            )
        emotion = Emotion(text=body.instructions)
    elif body.instructions:
        warnings.append("instructions: ignored; the running engine takes no emotion from text")
    fmt = body.response_format or default_format
    metadata = {"route": route, "model": body.model[:512]}
    if asked:
        metadata["voice"] = asked[:512]
    job = JobRequest(
        text=body.input,
        voice=voice,
        emotion=emotion,
        format=JOB_FORMATS[fmt],
        sample_rate=PCM_RATE if fmt == "pcm" else None,
        speed=None if body.speed == 1.0 else body.speed,
        metadata=metadata,
        on_unsupported="ignore",
    )
    return Mapped(job, warnings)


def tts_url_job(body: TtsUrlRequest, *, library: Library) -> Mapped:
    """The job for an index-tts-vllm `/tts_url` request: always a WAV."""
    warnings: list[str] = []
    path = body.speaker_path()
    voice = library.find(*names_in_path(path)) if path else None
    if path and voice is None:
        warnings.append(
            f"spk_audio_path: {quoted(path)} names no voice here; the default voice spoke"
        )
    metadata = {"route": "tts_url", "emo_control_method": str(body.emo_control_method)}
    if path:
        metadata["spk_audio_path"] = path[:512]
    tokens = body.max_text_tokens_per_sentence
    generation = None
    if tokens is not None and tokens != DEFAULT_TOKENS_PER_SENTENCE:
        generation = Generation(max_text_tokens_per_segment=tokens)
    job = JobRequest(
        text=body.text,
        voice=voice,
        emotion=_emotion(body, library, warnings),
        generation=generation,
        format="wav",
        metadata=metadata,
        on_unsupported="ignore",
    )
    return Mapped(job, warnings)


def _emotion(body: TtsUrlRequest, library: Library, warnings: list[str]) -> Emotion | None:
    method = body.emo_control_method
    # IndexTTS2's emo_alpha defaults to 1; sending it only when it differs keeps the request
    # (and its result-cache key) the same as one that left it out.
    alpha = None if body.emo_weight == 1.0 else body.emo_weight
    if method == 1:
        if not body.emo_ref_path:
            raise BadRequest("emo_ref_path: required with emo_control_method 1")
        audio = library.find(*names_in_path(body.emo_ref_path))
        if audio is None:
            warnings.append(
                f"emo_ref_path: {quoted(body.emo_ref_path)} names no voice here; "
                "the emotion follows the speaker"
            )
            return None
        return Emotion(audio=audio, alpha=alpha)
    if method == 2:
        if body.emo_vec is None:
            raise BadRequest("emo_vec: required with emo_control_method 2 (8 weights)")
        # IndexTTS2 scales the vector by emo_alpha before use; scaled here, the limit on the
        # sum applies to the weights the model gets.
        scaled = [w * body.emo_weight for w in body.emo_vec]
        if sum(scaled) > 1.0 + 1e-9:
            raise BadRequest(
                f"emo_vec: the weights (times emo_weight) sum to {sum(scaled):.3g}; the limit is 1"
            )
        if not any(scaled):  # all zero: the speaker's own emotion, as with method 0
            return None
        vector = EmotionVector(**dict(zip(EMOTIONS, scaled, strict=True)))
        return Emotion(vector=vector, random=body.emo_random or None)
    if method == 3:
        # Without emo_text IndexTTS2 reads the emotion from the text itself.
        text = body.emo_text or body.text[:500]
        return Emotion(text=text, alpha=alpha, random=body.emo_random or None)
    return None


def fingerprint(route: str, job: JobRequest) -> str:
    """Names the job a request makes, so that sending it again joins that job. Taken over the
    job rather than the raw body: the same body names another job once the caller's library
    gives its voice name a meaning it lacked (an upload after a fallback to the default)."""
    canonical = {"route": route, "job": job.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def media_type(fmt: str) -> str:
    """The Content-Type a job's audio is answered with (OpenAI's `audio/pcm` for raw PCM)."""
    return "audio/pcm" if fmt == "pcm_s16le" else CONTENT_TYPES[fmt]
