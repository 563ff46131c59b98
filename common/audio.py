"""Audio in and out: decoding what clients send, encoding what ttsq delivers.

Decoding goes through libsndfile (the `soundfile` wheel ships it, with MP3 and Ogg support);
MP3 encoding through `pedalboard` (LAME inside). Samples are float32 in [-1, 1], shaped
(frames,) for mono or (frames, channels).
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
import numpy.typing as npt

from common.errors import PermanentError

Samples = npt.NDArray[np.float32]


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


def encode(samples: Samples, rate: int, fmt: Literal["wav", "mp3"]) -> bytes:
    if fmt == "wav":
        from common.wav import encode_wav

        channels = 1 if samples.ndim == 1 else samples.shape[1]
        return encode_wav(pcm16(samples), rate, channels)
    from pedalboard.io import AudioFile

    out = io.BytesIO()
    planar = np.atleast_2d(samples) if samples.ndim == 1 else samples.T
    with AudioFile(out, "w", samplerate=rate, num_channels=planar.shape[0], format="mp3") as f:
        f.write(np.ascontiguousarray(planar))
    return out.getvalue()
