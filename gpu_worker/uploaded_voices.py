"""A job's reference audio resolved before the engine runs: uploaded voices and URLs.

An uploaded voice (`v_<hex>`) is read live from the voice store: its record names the stored
audio by content, which the worker's content-addressed cache holds or fetches from storage on
first use. The engine then gets the cache's `sha256:<hex>` voice id, a local file, like any
voice. A voice that is gone (deleted while the job waited) or another key's fails the job with
`voice_not_found`; storage that does not answer is transient and retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from common.errors import EngineInputError, PermanentError
from common.schemas.job_request import JobRequest
from common.schemas.voices import VoiceRecord, is_uploaded_voice
from common.storage import Storage
from common.voicestore import VoiceStore
from gpu_worker.engines.base import Engine
from gpu_worker.url_voices import UrlVoices
from gpu_worker.voices import CONTENT_PREFIX, VoiceCache

log = logging.getLogger(__name__)


class VoiceNotFound(PermanentError):
    code = "voice_not_found"


@dataclass
class UploadedVoices:
    store: VoiceStore
    storage: Storage
    cache: VoiceCache

    def record(self, voice_id: str, owner: str) -> VoiceRecord:
        voice = self.store.get(voice_id)
        if voice is None or voice.owner != owner:
            raise VoiceNotFound(f"voice: no voice {voice_id!r} (deleted, or never uploaded)")
        return voice

    def cache_id(self, voice: VoiceRecord) -> str:
        """The cache's voice id for an uploaded voice, its audio fetched from storage if new."""
        wanted = CONTENT_PREFIX + voice.sha256
        try:
            self.cache.path(wanted)
            return wanted
        except PermanentError:
            pass
        got = self.cache.store(self.storage.get(voice.object_key))
        if got != wanted:
            raise VoiceNotFound(f"voice: the stored audio of {voice.id!r} is damaged")
        log.info("voice %s fetched from storage into the cache", voice.id)
        return got


def resolve_references(
    request: JobRequest,
    owner: str,
    engine: Engine,
    *,
    url_voices: UrlVoices | None,
    uploaded: UploadedVoices | None,
) -> JobRequest:
    """The request with every reference audio named by a voice id the engine resolves."""
    update: dict[str, object] = {}
    if request.voice_url is not None:
        update["voice"], update["voice_url"] = _fetched(url_voices, request.voice_url), None
    elif is_uploaded_voice(request.voice):
        assert request.voice is not None
        voice = _uploaded(uploaded).record(request.voice, owner)
        caps = engine.capabilities()
        mapper = getattr(engine, "voice_for", None)
        if not caps.voice_cloning and mapper is not None:
            update["voice"] = mapper(voice.metadata)
        else:
            update["voice"] = _uploaded(uploaded).cache_id(voice)
    emotion = request.emotion
    if emotion is not None and emotion.audio_url is not None:
        audio = _fetched(url_voices, emotion.audio_url)
        update["emotion"] = emotion.model_copy(update={"audio": audio, "audio_url": None})
    elif emotion is not None and is_uploaded_voice(emotion.audio):
        assert emotion.audio is not None
        store = _uploaded(uploaded)
        audio = store.cache_id(store.record(emotion.audio, owner))
        update["emotion"] = emotion.model_copy(update={"audio": audio})
    return request.model_copy(update=update) if update else request


def _fetched(url_voices: UrlVoices | None, url: str) -> str:
    if url_voices is None:
        raise EngineInputError("this worker does not fetch reference audio by URL")
    return url_voices.voice_id(url)


def _uploaded(uploaded: UploadedVoices | None) -> UploadedVoices:
    if uploaded is None:
        raise EngineInputError("voice: this worker does not read uploaded voices")
    return uploaded
