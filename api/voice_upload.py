"""Checking an uploaded voice's audio, and a job's voices against the caller's library.

The upload is decoded for real (libsndfile: WAV, FLAC, MP3, Ogg Vorbis/Opus) and kept as mono
16-bit WAV at its own rate: one content, one hash, whatever container it came in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from common.audio.codec import decode, duration_s, encode, to_mono
from common.errors import ApiError, Unprocessable
from common.schemas.job_request import JobRequest
from common.schemas.voices import (
    MODEL_PROMPT_S,
    VoiceRecord,
    is_uploaded_voice,
    voice_object_key,
)
from common.storage import Storage
from common.voicestore import VoiceStore

MIN_VOICE_S = 1.0
#: Peaks below this (-60 dBFS) are silence: no speaker to clone.
SILENCE_PEAK = 1e-3


class BadVoice(ApiError):
    code = "invalid_voice"
    http_status = 422


@dataclass
class CheckedVoice:
    wav: bytes
    sha256: str
    duration_s: float
    sample_rate: int
    warnings: list[str]


def store_voice(
    voices: VoiceStore,
    storage: Storage,
    owner: str,
    checked: CheckedVoice,
    *,
    name: str,
    metadata: dict[str, str],
) -> tuple[VoiceRecord, bool]:
    """Store the audio, then the record (a record never names missing audio; a failed put
    stores nothing), under the object's lock. Returns the voice and whether it is new."""
    with voices.object_lock(checked.sha256):
        storage.put(voice_object_key(checked.sha256), checked.wav, "audio/wav")
        return voices.create(
            owner,
            name=name,
            metadata=metadata,
            sha256=checked.sha256,
            duration_s=checked.duration_s,
            sample_rate=checked.sample_rate,
        )


def delete_voice_and_audio(voices: VoiceStore, storage: Storage, voice_id: str, owner: str) -> None:
    """Delete the caller's voice, and its stored audio when no other voice uses it."""
    voice = voices.get_owned(voice_id, owner)
    with voices.object_lock(voice.sha256):
        voice, unused = voices.delete(voice_id, owner)
        if unused:
            storage.delete(voice.object_key)


def check_voice_audio(data: bytes, *, max_s: float) -> CheckedVoice:
    """The upload as mono WAV, or a 422 that says why it is no usable speaker reference."""
    samples, rate = decode(data)  # NotAudio: a 422 `not_audio`
    mono = to_mono(samples)
    seconds = duration_s(mono, rate)
    if seconds < MIN_VOICE_S:
        raise BadVoice(
            f"file: {seconds:.2f} s of audio, the shortest voice is {MIN_VOICE_S:g} s",
            code="voice_too_short",
        )
    if seconds > max_s:
        raise BadVoice(
            f"file: {seconds:.1f} s of audio, the longest voice is {max_s:g} s (TTS_MAX_VOICE_S)",
            code="voice_too_long",
        )
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise BadVoice("file: the audio is silent (no sample above -60 dBFS)", code="silent_audio")
    warnings = []
    if seconds > MODEL_PROMPT_S:
        warnings.append(
            f"file: {seconds:.1f} s of audio; IndexTTS2 uses only the first "
            f"{MODEL_PROMPT_S:g} s of a speaker reference"
        )
    wav = encode(mono, rate, "wav")
    return CheckedVoice(wav, hashlib.sha256(wav).hexdigest(), seconds, rate, warnings)


def check_voices(voices: VoiceStore, owner: str, request: JobRequest) -> None:
    """Refuse a job naming an uploaded voice the caller does not have (gone or another key's:
    the same answer, so no key learns of another's voices)."""
    named = [("voice", request.voice)]
    if request.emotion is not None:
        named.append(("emotion.audio", request.emotion.audio))
    for field, voice_id in named:
        if voice_id is not None and is_uploaded_voice(voice_id):
            voice = voices.get(voice_id)
            if voice is None or voice.owner != owner:
                raise Unprocessable(f"{field}: no voice {voice_id!r}", code="voice_not_found")
