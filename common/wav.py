"""16-bit PCM WAV encoding and the facts a job's `audio` reports."""

from __future__ import annotations

import hashlib
import io
import wave

from common.schemas import AudioInfo


def encode_wav(pcm16: bytes, sample_rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)
    return buf.getvalue()


def describe_wav(key: str, data: bytes) -> AudioInfo:
    with wave.open(io.BytesIO(data), "rb") as w:
        rate, frames = w.getframerate(), w.getnframes()
    return AudioInfo(
        key=key,
        sample_rate=rate,
        duration_s=round(frames / rate, 4) if rate else 0.0,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
