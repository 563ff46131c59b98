"""Speaker references on the worker: voice ids resolved to content-addressed local files.

IndexTTS2 caches the conditioning of one speaker, keyed by the prompt's *path string*. If one
path could hold two different audios, that cache would serve the wrong voice. So every voice is
copied to `<cache dir>/<sha256>.wav`: a path names exactly one content, and a changed voice gets
a new path. The cache is bounded (least recently used files go first).

Voices come from a source directory (`<data dir>/voices/<voice id>.wav`, the operator's shared
voices), from storage (a key's uploaded voices, `gpu_worker/uploaded_voices.py`), or from a URL
(`gpu_worker/url_voices.py`); the last two enter by content, as `sha256:<hex>` ids. Without a
`default` voice there, the default speaker reference is made once with eSpeak NG, so a fresh
machine has one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from common.errors import EngineInputError
from common.schemas.job_request import VOICE_ID_PATTERN

log = logging.getLogger(__name__)

DEFAULT_VOICE = "default"
#: A voice id naming cached audio by its content: `sha256:<64 hex digits>`.
CONTENT_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class VoiceCache:
    def __init__(
        self,
        source_dir: Path,
        cache_dir: Path,
        *,
        max_files: int = 256,
        make_default: Callable[[], bytes] | None = None,
    ) -> None:
        self.source_dir, self.cache_dir, self.max_files = source_dir, cache_dir, max_files
        self.make_default = make_default
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def voice_ids(self) -> list[str]:
        found = (
            {p.stem for p in self.source_dir.glob("*.wav")} if self.source_dir.is_dir() else set()
        )
        return sorted(found | {DEFAULT_VOICE})

    def path(self, voice_id: str | None) -> str:
        """The content-addressed local file for a voice id (the default when None).

        `sha256:<hex>` names audio already in the cache (a fetched `voice_url`, see `store`).
        """
        voice_id = voice_id or DEFAULT_VOICE
        if voice_id.startswith(CONTENT_PREFIX):
            target = self.cache_dir / f"{voice_id.removeprefix(CONTENT_PREFIX)}.wav"
            if not _HEX64.fullmatch(target.stem) or not target.is_file():
                raise EngineInputError("voice: the fetched reference audio left the cache")
            target.touch()  # most recently used
            return str(target)
        if not re.fullmatch(VOICE_ID_PATTERN, voice_id):
            raise EngineInputError(f"voice: {voice_id!r} is not a valid voice id")
        return str(self._put(self._read(voice_id)))

    def store(self, wav: bytes) -> str:
        """Keep `wav` in the cache; returns the voice id that names it (`sha256:<hex>`)."""
        return CONTENT_PREFIX + self._put(wav).stem

    def _put(self, data: bytes) -> Path:
        target = self.cache_dir / f"{hashlib.sha256(data).hexdigest()}.wav"
        if not target.exists():
            tmp = target.with_suffix(f".{os.getpid()}.part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            self._evict(keep=target)
        else:
            target.touch()  # most recently used
        return target

    def _read(self, voice_id: str) -> bytes:
        source = self.source_dir / f"{voice_id}.wav"
        if source.is_file():
            return source.read_bytes()
        if voice_id == DEFAULT_VOICE and self.make_default is not None:
            self.source_dir.mkdir(parents=True, exist_ok=True)
            data = self.make_default()
            source.write_bytes(data)
            log.info("made the default speaker reference at %s", source)
            return data
        raise EngineInputError(f"voice: no voice {voice_id!r} on this worker")

    def _evict(self, keep: Path) -> None:
        files = sorted(self.cache_dir.glob("*.wav"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.max_files)]:
            if old != keep:
                old.unlink(missing_ok=True)
