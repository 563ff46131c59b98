"""Speaker references on the worker: voice ids resolved to content-addressed local files.

IndexTTS2 caches the conditioning of one speaker, keyed by the prompt's *path string*. If one
path could hold two different audios, that cache would serve the wrong voice. So every voice is
copied to `<cache dir>/<sha256>.wav`: a path names exactly one content, and a changed voice gets
a new path. The cache is bounded (least recently used files go first).

Voices come from a source directory (`<data dir>/voices/<voice id>.wav`, placed by the operator
now; uploaded voices will arrive through storage later). Without a `default` voice there, the
default speaker reference is made once with eSpeak NG, so a fresh machine has one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from common.errors import EngineInputError
from common.schemas import VOICE_ID_PATTERN

log = logging.getLogger(__name__)

DEFAULT_VOICE = "default"


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
        """The content-addressed local file for a voice id (the default when None)."""
        import re

        voice_id = voice_id or DEFAULT_VOICE
        if not re.fullmatch(VOICE_ID_PATTERN, voice_id):
            raise EngineInputError(f"voice: {voice_id!r} is not a valid voice id")
        data = self._read(voice_id)
        digest = hashlib.sha256(data).hexdigest()
        target = self.cache_dir / f"{digest}.wav"
        if not target.exists():
            tmp = target.with_suffix(f".{os.getpid()}.part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            self._evict(keep=target)
        else:
            target.touch()  # most recently used
        return str(target)

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
