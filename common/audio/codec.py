"""Audio in and out: decoding what clients send, encoding what ttsq delivers.

Decoding goes through libsndfile (the `soundfile` wheel ships it, with MP3 and Ogg support),
and so does encoding FLAC and Ogg Opus; MP3 encoding goes through `pedalboard` (LAME inside).
Samples are float32 in [-1, 1], shaped (frames,) for mono or (frames, channels).
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from common.errors import PermanentError

Samples = npt.NDArray[np.float32]
#: The ceiling when a job asks for loudness and names none (EBU R128: -1 dBTP).
TRUE_PEAK_CEILING_DB = -1.0
#: What `trim_silence` cuts when the job names no `silence_threshold_db`.
SILENCE_THRESHOLD_DB = -50.0


class NotAudio(PermanentError):
    code = "not_audio"


def decode(data: bytes) -> tuple[Samples, int]:
    """Any of WAV, FLAC, MP3 or Ogg (Vorbis, Opus) to float32 samples and their rate."""
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise NotAudio(f"not a readable WAV, FLAC, MP3 or Ogg file ({exc})") from exc
    if samples.size == 0:
        raise NotAudio("the audio has no samples")
    return np.asarray(samples, dtype=np.float32), int(rate)


def to_mono(samples: Samples) -> Samples:
    return samples if samples.ndim == 1 else samples.mean(axis=1).astype(np.float32)


def duration_s(samples: Samples, rate: int) -> float:
    return float(samples.shape[0] / rate)


def pcm16(samples: Samples) -> bytes:
    """16-bit PCM; the inverse of `from_pcm16`, so 16-bit audio passes through unchanged."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> Samples:
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def encode(samples: Samples, rate: int, fmt: str) -> bytes:
    """`samples` as `fmt` (one of `schemas.AUDIO_FORMATS`): WAV, FLAC and raw PCM at 16 bits,
    Ogg Opus through libsndfile, MP3 through LAME."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    if fmt == "wav":
        from common.audio.wav import encode_wav

        return encode_wav(pcm16(samples), rate, channels)
    if fmt == "pcm_s16le":
        return pcm16(samples)
    if fmt in ("flac", "opus"):
        import soundfile

        out = io.BytesIO()
        kind, subtype = ("FLAC", "PCM_16") if fmt == "flac" else ("OGG", "OPUS")
        soundfile.write(out, samples, rate, format=kind, subtype=subtype)
        return out.getvalue()
    from pedalboard.io import AudioFile

    out = io.BytesIO()
    planar = np.atleast_2d(samples) if samples.ndim == 1 else samples.T
    with AudioFile(out, "w", samplerate=rate, num_channels=planar.shape[0], format=fmt) as f:
        f.write(np.ascontiguousarray(planar))
    return out.getvalue()


def decode_raw(data: bytes, rate: int, channels: int) -> Samples:
    """Raw 16-bit little-endian PCM (`pcm_s16le`), which carries neither its rate nor its
    channels, to samples shaped as `decode` shapes them."""
    import soundfile

    samples, _ = soundfile.read(
        io.BytesIO(data),
        dtype="float32",
        always_2d=False,
        format="RAW",
        subtype="PCM_16",
        endian="LITTLE",
        samplerate=rate,
        channels=channels,
    )
    return np.asarray(samples, dtype=np.float32)


class Range(BaseModel):
    min: float
    max: float


class AudioSupport(BaseModel):
    """What a job's audio can be asked to be (`GET /v1/engine`), read off `JobRequest`."""

    formats: list[str]
    #: The formats that carry only some rates within `ranges["sample_rate"]`.
    format_rates: dict[str, list[int]]
    #: Each bounded numeric audio option of a job: sample_rate, channels, speed, pitch, energy,
    #: target_duration_s, max_stretch, loudness (LUFS), true_peak_db (dBTP),
    #: silence_threshold_db (dBFS).
    ranges: dict[str, Range]
    defaults: dict[str, float]


_RANGED = (
    "sample_rate",
    "channels",
    "speed",
    "pitch",
    "energy",
    "target_duration_s",
    "max_stretch",
    "loudness",
    "true_peak_db",
    "silence_threshold_db",
)


def support(max_stretch: float) -> AudioSupport:
    """`max_stretch`: the deployment's default (TTS_MAX_STRETCH)."""
    from common.schemas.job_request import AUDIO_FORMATS, MP3_RATES, OPUS_RATES, JobRequest

    props = JobRequest.model_json_schema()["properties"]
    ranges = {}
    for name in _RANGED:
        bounds = props[name]["anyOf"][0]
        low = bounds.get("minimum", bounds.get("exclusiveMinimum"))
        ranges[name] = Range(min=low, max=bounds["maximum"])
    return AudioSupport(
        formats=list(AUDIO_FORMATS),
        format_rates={"mp3": list(MP3_RATES), "opus": list(OPUS_RATES)},
        ranges=ranges,
        defaults={
            "channels": 1,
            "max_stretch": max_stretch,
            "true_peak_db": TRUE_PEAK_CEILING_DB,
            "silence_threshold_db": SILENCE_THRESHOLD_DB,
        },
    )
