"""Speaker references given as URLs (`voice_url`, the drop-in's `prompt_audio_url`).

A dubbing run sends one presigned URL per segment for the same speaker, its query string new
each time. The audio is fetched under the guard (`gpu_worker.fetch`), decoded, and kept in the
content-addressed voice cache; the URL without its query string remembers which content it
held, so the next segment's URL reuses it: within `reuse_s` without asking, later with a
conditional GET (`If-None-Match`) that answers 304 while the object is unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common.audio.codec import decode, encode, to_mono
from common.errors import PermanentError
from common.netguard import IPNetwork, Resolver, resolve
from gpu_worker.fetch import FetchRefused, fetch, host_of
from gpu_worker.voices import VoiceCache

log = logging.getLogger(__name__)


@dataclass
class _Known:
    voice_id: str
    etag: str | None
    checked_at: float


@dataclass
class UrlVoices:
    cache: VoiceCache
    allow: list[IPNetwork]
    max_bytes: int
    timeout_s: float
    reuse_s: float = 600.0
    resolver: Resolver = resolve
    #: How many bodies were downloaded (a test counts fetches by it).
    downloads: int = 0
    _known: dict[str, _Known] = field(default_factory=dict)

    def voice_id(self, url: str) -> str:
        """The cache's voice id (`sha256:…`) for the audio behind `url`, fetched if needed."""
        where = urlsplit(url)._replace(query="", fragment="").geturl()
        known = self._known.get(where)
        now = time.monotonic()
        if known is not None and now - known.checked_at < self.reuse_s and self._cached(known):
            return known.voice_id
        etag = known.etag if known is not None and self._cached(known) else None
        got = fetch(
            url,
            allow=self.allow,
            max_bytes=self.max_bytes,
            timeout_s=self.timeout_s,
            etag=etag,
            resolver=self.resolver,
        )
        if got.not_modified and known is not None:
            known.checked_at = now
            return known.voice_id
        self.downloads += 1
        try:
            samples, rate = decode(got.body)
        except PermanentError as exc:
            raise FetchRefused(f"the audio at {host_of(url)} is unusable: {exc.message}") from exc
        voice_id = self.cache.store(encode(to_mono(samples), rate, "wav"))
        log.info("fetched a reference voice from %s (%s bytes)", host_of(url), len(got.body))
        self._known[where] = _Known(voice_id, got.etag, now)
        return voice_id

    def _cached(self, known: _Known) -> bool:
        try:
            self.cache.path(known.voice_id)
        except PermanentError:
            return False
        return True
