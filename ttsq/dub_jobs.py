"""`ttsq dub`'s requests: one job per cue, the voices they name, and the ledger a rerun reads.

A voice in the map (or `--voice`) is a voice of the library (an engine voice, an uploaded
voice's id or its name) or a path to a reference recording (`.wav`, `.flac`, `.mp3`, `.ogg`,
or anything with a `/`; relative to the map's folder), which is uploaded first and then named
by its id (uploading the same audio again answers with the same voice).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from common.schemas.batches import MAX_BATCH_ITEMS, BatchItem
from common.schemas.job_request import JobRequest
from ttsq.client import Client
from ttsq.subtitles import Cue, SubtitleError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")


def looks_like_path(voice: str) -> bool:
    return "/" in voice or voice.lower().endswith(AUDIO_SUFFIXES)


def resolve_voices(
    client: Client, named: dict[str, Path], log: Callable[[str], None]
) -> dict[str, str]:
    """Each voice as named (to the folder its path is relative to) -> the voice jobs send."""
    resolved: dict[str, str] = {}
    library: dict[str, str] | None = None
    for voice, base in sorted(named.items()):
        if looks_like_path(voice):
            path = (base / voice).expanduser()
            if not path.is_file():
                raise SubtitleError(f"voice {voice!r}: no such file {path}")
            uploaded = client.upload_voice(path)
            log(f"voice {voice}: uploaded as {uploaded.id}")
            resolved[voice] = uploaded.id
            continue
        if library is None:  # the key's own voices, newest first: the newest of a name wins
            library = {}
            for v in reversed(client.list_voices()):
                library[v.name] = v.id
        resolved[voice] = library.get(voice, voice)
    return resolved


def job_request(cue: Cue, voice: str | None, fmt: str, rate: int | None) -> dict[str, Any]:
    """The job for one cue: fitted exactly to its slot, and spoken even where the engine lacks
    the emotion (a warning says so)."""
    body: dict[str, Any] = {
        "text": cue.text,
        "format": fmt,
        "target_duration_s": round(cue.duration_s, 3),
        "strict_duration": True,
        "on_unsupported": "ignore",
        "metadata": {"dub_cue": str(cue.number)},
    }
    if voice is not None:
        body["voice"] = voice
    if rate is not None:
        body["sample_rate"] = rate
    if cue.emotion is not None:
        body["emotion"] = {"vector": {cue.emotion.name: cue.emotion.weight}}
    try:
        JobRequest.model_validate(body)
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SubtitleError(f"cue {cue.number}: {why}") from exc
    return body


def ref(cue: int) -> str:
    return f"cue-{cue}"


def cue_of(item_ref: str) -> int:
    return int(item_ref.removeprefix("cue-"))


def chunks(bodies: dict[int, dict[str, Any]]) -> list[list[BatchItem]]:
    """The items, in cue order, as batches of at most MAX_BATCH_ITEMS."""
    items = [BatchItem.model_validate({"ref": ref(n), **b}) for n, b in sorted(bodies.items())]
    return [items[i : i + MAX_BATCH_ITEMS] for i in range(0, len(items), MAX_BATCH_ITEMS)]


def digest(value: Any, salt: str = "") -> str:
    """An idempotency key from the requests themselves: the same lines, the same key."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) + salt
    return "ttsq-dub-" + hashlib.sha256(text.encode()).hexdigest()


def batch_key(items: list[BatchItem]) -> str:
    return digest([i.model_dump(mode="json", exclude_unset=True) for i in items])


def retry_key(body: dict[str, Any]) -> str:
    return digest(body, "retry")


class LedgerBatch(BaseModel):
    idempotency_key: str
    batch_id: str | None = None


class Ledger(BaseModel):
    """`<out>.dub.json`: written before each submit, so a rerun joins what was sent."""

    subtitles: str
    batches: list[LedgerBatch] = Field(default_factory=list)
    #: Cue number -> the job its one retry was submitted as.
    retries: dict[int, str] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, subtitles: str) -> Ledger:
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return cls(subtitles=subtitles)

    def batch(self, key: str) -> LedgerBatch:
        for entry in self.batches:
            if entry.idempotency_key == key:
                return entry
        entry = LedgerBatch(idempotency_key=key)
        self.batches.append(entry)
        return entry

    def save(self, path: Path) -> None:
        part = path.with_name(f".{path.name}.part")
        part.write_text(self.model_dump_json(indent=2))
        part.replace(path)
