"""Typed models of uploaded voices: the stored record, the public resource, the listing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from common.schemas.job_request import MetadataKey, MetadataValue

#: An uploaded voice's id: `v_` and 32 hex digits. It matches `VOICE_ID_PATTERN`, so a job
#: names it as `voice` (or `emotion.audio`) like any other voice.
UPLOADED_VOICE_PATTERN = r"^v_[0-9a-f]{32}$"
_UPLOADED = re.compile(UPLOADED_VOICE_PATTERN)
#: How much of a speaker prompt IndexTTS2 uses (upstream cuts the prompt at 15 s).
MODEL_PROMPT_S = 15.0

VoiceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
VoiceMetadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]


def is_uploaded_voice(voice_id: str | None) -> bool:
    return voice_id is not None and _UPLOADED.fullmatch(voice_id) is not None


def voice_object_key(sha256: str) -> str:
    """Where a voice's audio lives in storage: named by its content (mono 16-bit WAV)."""
    return f"voices/{sha256}.wav"


class VoiceRecord(BaseModel):
    """What the voice store keeps per uploaded voice; never sent to clients as is."""

    id: str
    owner: str
    name: str
    metadata: dict[str, str] = Field(default_factory=dict)
    #: Of the stored WAV, which is also its storage key's and the worker's cache file's name.
    sha256: str
    duration_s: float
    sample_rate: int
    created_at: datetime

    @property
    def object_key(self) -> str:
        return voice_object_key(self.sha256)


class VoiceResource(BaseModel):
    """A voice as a client sees it. Shared voices (the operator's, on every worker) carry
    only their id and name."""

    id: str
    name: str
    shared: bool = False
    duration_s: float | None = None
    sample_rate: int | None = None
    sha256: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    warnings: list[str] = Field(default_factory=list)


class VoiceList(BaseModel):
    data: list[VoiceResource]
    next_cursor: str | None
