"""Uploaded voices' records in Redis: create (once per key and audio), read, list, delete.

A voice's id derives from its owner and its audio, so the same audio uploaded twice by one
key is one voice (the second upload answers the first's record). Its audio is one storage
object per content (`voices/<sha256>.wav`), shared by every key that uploaded it: the object
goes with the last voice that uses it. Storing the object and adding its user, and removing
its last user and deleting the object, each run under one lock per object
(`object_lock`), so an upload of the same audio by another key never lands between a delete's
check and its removal of the object.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import cast

import redis
from redis.lock import Lock

from common import keys
from common.errors import NotFound
from common.paging import Cursor, newest_first
from common.schemas.voices import VoiceRecord

#: A listing cursor: the last voice's creation score and its id.


def voice_id_for(owner: str, sha256: str) -> str:
    return "v_" + hashlib.sha256(f"{owner}\0{sha256}".encode()).hexdigest()[:32]


#: How long an object lock lasts if its holder dies: beyond a storage call's own timeouts.
OBJECT_LOCK_S = 120


class VoiceStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def get(self, voice_id: str) -> VoiceRecord | None:
        raw = cast(bytes | None, self.redis.get(keys.voice(voice_id)))
        return VoiceRecord.model_validate_json(raw) if raw is not None else None

    def get_owned(self, voice_id: str, owner: str) -> VoiceRecord:
        """The voice, if `owner` made it; another key's voice is as absent as a missing one."""
        voice = self.get(voice_id)
        if voice is None or voice.owner != owner:
            raise NotFound(f"no voice {voice_id!r}", code="voice_not_found")
        return voice

    def ids_owned(self, owner: str) -> list[str]:
        return [
            m.decode()
            for m in cast(list[bytes], self.redis.zrange(keys.owner_voices(owner), 0, -1))
        ]

    def create(
        self,
        owner: str,
        *,
        name: str,
        metadata: dict[str, str],
        sha256: str,
        duration_s: float,
        sample_rate: int,
    ) -> tuple[VoiceRecord, bool]:
        """Store a voice; returns it and whether it is new (else the key's earlier upload)."""
        now = datetime.now(UTC)
        record = VoiceRecord(
            id=voice_id_for(owner, sha256),
            owner=owner,
            name=name,
            metadata=metadata,
            sha256=sha256,
            duration_s=duration_s,
            sample_rate=sample_rate,
            created_at=now,
        )
        if not self.redis.set(keys.voice(record.id), record.model_dump_json(), nx=True):
            earlier = self.get(record.id)
            if earlier is not None:
                return earlier, False
            self.redis.set(keys.voice(record.id), record.model_dump_json())  # deleted meanwhile
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(keys.owner_voices(owner), {record.id: now.timestamp()})
        pipe.sadd(keys.voice_object_users(sha256), record.id)
        pipe.execute()
        return record, True

    def object_lock(self, sha256: str) -> Lock:
        """Hold it around storing a voice's object and `create`, and around `delete` and
        deleting the object it leaves unused."""
        return Lock(
            self.redis,
            keys.voice_object_lock(sha256),
            timeout=OBJECT_LOCK_S,
            blocking_timeout=OBJECT_LOCK_S,
        )

    def delete(self, voice_id: str, owner: str) -> tuple[VoiceRecord, bool]:
        """Remove the voice; returns it and whether its stored audio is now unused."""
        voice = self.get_owned(voice_id, owner)
        users = keys.voice_object_users(voice.sha256)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.voice(voice_id))
        pipe.zrem(keys.owner_voices(owner), voice_id)
        pipe.srem(users, voice_id)
        pipe.scard(users)
        remaining = pipe.execute()[-1]
        return voice, remaining == 0

    def list_owned(
        self, owner: str, *, after: Cursor | None, limit: int
    ) -> tuple[list[VoiceRecord], Cursor | None]:
        """Newest first, from just after `after` (ordered as the job listing is)."""
        return newest_first(
            self.redis, keys.owner_voices(owner), after=after, limit=limit, load=self.get
        )
