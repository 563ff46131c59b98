"""Uploaded voices on an engine that cannot clone: eSpeak speaks the voice its metadata names."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.jobs.store import JobStore
from common.schemas.job_request import JobRequest
from common.voicestore import VoiceStore
from gpu_worker.engines.espeak import VOICE_MAPPING, EspeakEngine
from gpu_worker.uploaded_voices import UploadedVoices, VoiceNotFound, resolve_references
from gpu_worker.voices import VoiceCache


class NoStorage:
    def get(self, key: str) -> bytes:
        raise AssertionError("eSpeak never needs the voice's audio")


def test_espeak_speaks_an_uploaded_voice_in_the_voice_its_metadata_names(
    store: JobStore, tmp_path: Path
) -> None:
    engine = EspeakEngine()
    assert engine.capabilities().voice_mapping == VOICE_MAPPING
    voices = VoiceStore(store.redis)
    made, _ = voices.create(
        "alice",
        name="mei",
        metadata={"language": "zh", "gender": "female"},
        sha256="0" * 64,
        duration_s=2.0,
        sample_rate=16000,
    )
    uploaded = UploadedVoices(voices, NoStorage(), VoiceCache(tmp_path, tmp_path / "cache"))  # type: ignore[arg-type]
    request = JobRequest(text="hello", voice=made.id)
    resolved = resolve_references(request, "alice", engine, url_voices=None, uploaded=uploaded)
    assert resolved.voice == "cmn+f3"
    assert engine.voice_for({"language": "en-us", "gender": "male"}) == "en-us+m3"
    assert engine.voice_for({}) == "auto"
    plain = engine.synthesize(JobRequest(text="hello there", voice="cmn")).pcm16
    mapped = engine.synthesize(resolved.model_copy(update={"text": "hello there"})).pcm16
    assert mapped and mapped != plain  # the female variant, not the plain voice
    with pytest.raises(VoiceNotFound):
        resolve_references(request, "bob", engine, url_voices=None, uploaded=uploaded)
