"""What a client asks for: the body of `POST /v1/jobs` and its parts (emotion, generation,
timed segments)."""

from __future__ import annotations

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
