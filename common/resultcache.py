"""The result cache: a job identical to an earlier one gets a copy of its audio, no engine call.

The key (`cache_key`) is a sha256 over the owner, the engine and its model version, and every
part of the request that shapes the audio: text, language, emotion and generation controls,
segments and every output option (format, rate, speed, pitch, energy, target duration and
stretch cap, channels, loudness, silence trimming). Voices count by content: an uploaded voice
by its audio's sha256, a built-in one by its name. Left out: metadata, webhooks, priority.

Not cached: `cache: false`; `emotion.random: true`. A `voice_url` or `emotion.audio_url` counts
by the content the worker fetched, so such a job's key is known only there: the synthesis
worker looks it up after fetching and before the engine runs (`gpu_worker/reuse.py`), as it
does for a job submitted while no synthesis worker was ready, or while ready ones disagreed on
engine or model version (a roll-out), and for one that missed at submission.

An entry (`keys.result`) points at the succeeded job that made the audio and expires a margin
before that job does. A hit copies the object under the new job's own key, so no two jobs
share an object and the sweeper deleting the source's audio on expiry never touches the copy;
a copy that fails (the source just went) is a miss, and the job is synthesised. The new job
then becomes the entry (it lives longer). Entries are per owner: one API key never learns,
from `cached` or from timing, what another one synthesised.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any, cast

import redis
from pydantic import BaseModel
from redis.client import Pipeline

from common import keys
from common.errors import StorageUnavailable
from common.jobs.store import JobStore
from common.schemas.job_request import JobRequest
from common.schemas.jobs import AudioInfo, JobRecord, JobStatus
from common.schemas.voices import is_uploaded_voice
from common.schemas.workers import WorkerHeartbeat
from common.storage import CONTENT_TYPES, Storage, audio_key
from common.voicestore import VoiceStore

log = logging.getLogger(__name__)

#: Request fields that do not change the audio.
NOT_IN_KEY = {"metadata", "webhook_url", "webhook_events", "priority", "cache", "on_unsupported"}
#: An entry lapses this long (at most a quarter of what is left) before its source job
#: expires, so a hit rarely races the sweeper's delete of the source's audio; one that still
#: does finds no object, and is a miss, not an error.
EXPIRY_MARGIN_S = 60


class CacheEntry(BaseModel):
    """What `keys.result` holds: the job whose audio answers the key."""

    job_id: str
    audio: AudioInfo
    warnings: list[str]


def engine_version(beats: list[WorkerHeartbeat]) -> str | None:
    """`engine/model_version` of the ready synthesis workers if they agree; else None."""
    found = {(b.engine, b.model_version) for b in beats if b.kind == "synth" and b.ready}
    if len(found) != 1:
        return None
    engine, version = found.pop()
    return f"{engine}/{version}" if engine else None


def cache_key(
    owner: str,
    request: JobRequest,
    *,
    engine: str | None,
    voices: VoiceStore,
    fetched: JobRequest | None = None,
) -> str | None:
    """The job's key, or None when its audio must not be reused or cannot be known yet.

    `fetched` is the request with its URLs resolved to the fetched audio's content id (the
    worker's `resolve_references`); without it a job naming a URL has no key.
    """
    emotion = request.emotion
    if engine is None or not request.cache or (emotion is not None and emotion.random):
        return None
    body: dict[str, Any] = request.model_dump(mode="json", exclude=NOT_IN_KEY | {"voice_url"})
    if request.voice_url is not None:
        body["voice"] = f"content:{fetched.voice}" if fetched is not None else None
    elif request.voice is not None:
        body["voice"] = _voice_content(voices, owner, request.voice)
    if emotion is not None:
        body["emotion"].pop("audio_url")
        if emotion.audio_url is not None:
            got = fetched.emotion if fetched is not None else None
            body["emotion"]["audio"] = f"content:{got.audio}" if got is not None else None
        elif emotion.audio is not None:
            body["emotion"]["audio"] = _voice_content(voices, owner, emotion.audio)
        if (emotion.audio or emotion.audio_url) is not None and body["emotion"]["audio"] is None:
            return None
    if (request.voice or request.voice_url) is not None and body["voice"] is None:
        return None
    canonical = json.dumps(
        {"owner": owner, "engine": engine, "request": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _voice_content(voices: VoiceStore, owner: str, voice_id: str) -> str | None:
    if not is_uploaded_voice(voice_id):
        return f"builtin:{voice_id}"
    record = voices.get(voice_id)
    if record is None or record.owner != owner:
        return None
    return f"sha256:{record.sha256}"


class ResultCache:
    def __init__(self, client: redis.Redis, storage: Storage) -> None:
        self.redis = client
        self.storage = storage

    def lookup(self, key: str) -> CacheEntry | None:
        raw = self.redis.get(keys.result(key))
        return CacheEntry.model_validate_json(raw) if raw else None

    def remember(self, job: JobRecord | None, now: datetime) -> None:
        """Make a succeeded job's audio the answer to its key, until shortly before it expires."""
        if job is None or job.cache_key is None or job.audio is None:
            return
        if job.status != JobStatus.succeeded or job.expires_at is None:
            return
        left = (job.expires_at - now).total_seconds()
        ttl = int(left - min(EXPIRY_MARGIN_S, left / 4))
        if ttl <= 0:
            return
        entry = CacheEntry(job_id=job.id, audio=job.audio, warnings=job.warnings)
        self.redis.set(keys.result(job.cache_key), entry.model_dump_json(), ex=ttl)

    def forget(self, job: JobRecord) -> None:
        """Drop the entry if it points at `job` (its audio is about to be deleted)."""
        if job.cache_key is None:
            return
        name = keys.result(job.cache_key)

        def txn(pipe: Pipeline) -> None:
            raw = cast(bytes | None, pipe.get(name))
            pipe.multi()
            if raw and CacheEntry.model_validate_json(raw).job_id == job.id:
                pipe.delete(name)

        self.redis.transaction(txn, name)

    def serve(
        self, store: JobStore, job: JobRecord, *, instance: str | None = None
    ) -> JobRecord | None:
        """End a job with a copy of its key's audio; None on a miss (synthesise it). A queued
        job, or with `instance`, one that synthesis worker holds."""
        if job.cache_key is None:
            return None
        entry = self.lookup(job.cache_key)
        if entry is None or entry.job_id == job.id:
            return None
        key = audio_key(job.id, entry.audio.format)
        try:
            data = self.storage.get(entry.audio.key)
            if hashlib.sha256(data).hexdigest() != entry.audio.sha256:
                raise StorageUnavailable("the cached object changed")
            self.storage.put(key, data, CONTENT_TYPES[entry.audio.format])
        except StorageUnavailable as exc:
            log.warning("[job %s] cache entry unusable (%s); synthesising", job.id, exc.message)
            self.forget(job.model_copy(update={"id": entry.job_id}))
            return None
        audio = entry.audio.model_copy(update={"key": key})
        done = store.succeed_from_cache(job.id, audio, entry.warnings, instance=instance)
        if done is None:  # canceled or taken meanwhile: its copy goes too
            self.storage.delete(key)
            return None
        log.info("[job %s] served from the cache (audio of job %s)", job.id, entry.job_id)
        self.remember(done, store.clock())
        return done
