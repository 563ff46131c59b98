"""The dubbing project's worker, replayed as it really behaves (its Go `worker/internal/tts/
client.go` of January 2026 and the segment loop around it), for tests and benchmarks.

What it does, and so what this does:
- one `POST /synthesize` per segment, JSON: `text`, `speaker_id: "default"`,
  `prompt_audio_url` (a presigned URL, signed anew for each batch of 20 segments),
  `language`, `target_duration_ms` (1500 when unknown), `output_format: "wav"`,
  `sample_rate: 22050`; `tts_backend` and `prosody_control` only when set;
- no key header: the key is in `TTS_SERVICE_URL`'s user-info, which Go's net/http sends as
  `Authorization: Basic` on the POST and on the download of a relative `audio_url`;
- the client tries 3 times, sleeping 1 s then 2 s, on a transport error or 429/500/502/503/504;
  any other non-200 ends the call. Around it the worker tries a failed segment 4 times, 2 s
  apart, whatever the error: 12 POSTs and about 18 s at most per segment;
- 4 segments in flight, 600 s timeout per request; it ignores `duration_ms` and keeps the
  downloaded body as the segment's WAV.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

RETRYABLE = {429, 500, 502, 503, 504}
CLIENT_TRIES, CLIENT_SLEEPS_S = 3, (1.0, 2.0)
WORKER_TRIES, WORKER_SLEEP_S = 4, 2.0
IN_FLIGHT, BATCH, TIMEOUT_S = 4, 20, 600.0


class SegmentFailed(Exception):
    pass


@dataclass
class Segment:
    index: int
    text: str
    target_ms: int | None = None


@dataclass
class Result:
    segment: Segment
    ok: bool = False
    wav: bytes = b""
    answer: dict[str, Any] = field(default_factory=dict)
    posts: int = 0
    error: str = ""
    started: float = 0.0
    ended: float = 0.0

    @property
    def waited_s(self) -> float:
        return self.ended - self.started


@dataclass
class DubbingWorker:
    #: TTS_SERVICE_URL, with the key in its user-info: `http://dub:<key>@127.0.0.1:6006`.
    service_url: str
    #: The speaker's prompt, presigned for one batch (its argument: the batch's number).
    prompt_url: Callable[[int], str]
    language: str = "en"
    #: Called after each segment ends (tests use it to restart the service mid-run).
    on_segment: Callable[[Result], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def run(self, segments: list[Segment]) -> list[Result]:
        results: list[Result] = []
        for start in range(0, len(segments), BATCH):
            prompt = self.prompt_url(start // BATCH)  # re-signed per batch of 20
            batch = segments[start : start + BATCH]
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                results += pool.map(lambda s: self._segment(s, prompt), batch)
        return results

    def _segment(self, segment: Segment, prompt: str) -> Result:
        result = Result(segment, started=time.monotonic())
        with httpx.Client(timeout=TIMEOUT_S, headers=self._headers()) as http:
            for attempt in range(WORKER_TRIES):
                try:
                    result.answer, result.wav = self._synthesize(http, segment, prompt, result)
                    result.ok = True
                    break
                except SegmentFailed as exc:
                    result.error = str(exc)
                    if attempt < WORKER_TRIES - 1:
                        self.sleep(WORKER_SLEEP_S)
        result.ended = time.monotonic()
        if self.on_segment is not None:
            with self._lock:
                self.on_segment(result)
        return result

    def _headers(self) -> dict[str, str]:
        parts = urlsplit(self.service_url)
        headers = {"User-Agent": "Go-http-client/1.1"}
        if parts.username is not None:
            pair = f"{parts.username}:{parts.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def _base(self) -> str:
        parts = urlsplit(self.service_url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"

    def _synthesize(
        self, http: httpx.Client, segment: Segment, prompt: str, result: Result
    ) -> tuple[dict[str, Any], bytes]:
        body = {
            "text": segment.text,
            "speaker_id": "default",
            "prompt_audio_url": prompt,
            "language": self.language,
            "target_duration_ms": segment.target_ms or 1500,
            "output_format": "wav",
            "sample_rate": 22050,
        }
        answer = self._do(http, "POST", f"{self._base()}/synthesize", body, result).json()
        url = urljoin(self._base() + "/", answer["audio_url"])
        return answer, self._do(http, "GET", url, None, result).content

    def _do(
        self,
        http: httpx.Client,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        result: Result,
    ) -> httpx.Response:
        last = ""
        for attempt in range(CLIENT_TRIES):
            if method == "POST":
                result.posts += 1
            try:
                r = http.request(method, url, json=body)
            except httpx.TransportError as exc:
                last = f"transport: {type(exc).__name__}"
            else:
                if r.status_code == 200:
                    return r
                last = f"{r.status_code}: {r.text[:300]}"
                if r.status_code not in RETRYABLE:
                    raise SegmentFailed(last)
            if attempt < CLIENT_TRIES - 1:
                self.sleep(CLIENT_SLEEPS_S[attempt])
        raise SegmentFailed(last)
