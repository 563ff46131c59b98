"""`ttsq say`: submit through the API, wait for the job, save the audio."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from common.settings import Settings


def _key(settings: Settings, key: str | None) -> str | None:
    if key:
        return key
    keys = settings.parsed_api_keys()
    if keys:
        return next(iter(keys))
    path = settings.data_dir / "api_key"
    return path.read_text().strip() if path.exists() else None


def say(
    settings: Settings, *, text: str, out: str, voice: str | None, url: str | None, key: str | None
) -> int:
    base = (url or settings.base_url).rstrip("/")
    headers = {"Prefer": "wait=60"}
    api_key = _key(settings, key)
    if api_key:
        headers["X-Api-Key"] = api_key
    body: dict[str, object] = {"text": text}
    if voice:
        body["voice"] = voice
    with httpx.Client(timeout=90) as client:
        resp = client.post(f"{base}/v1/jobs", json=body, headers=headers)
        if resp.status_code >= 400:
            print(f"refused: {resp.status_code} {resp.text}", file=sys.stderr)
            return 1
        job = resp.json()
        while job["status"] in ("queued", "running"):
            time.sleep(0.5)
            job = client.get(job["urls"]["self"], headers=headers).json()
        if job["status"] != "succeeded":
            print(f"job {job['id']} {job['status']}: {job.get('error')}", file=sys.stderr)
            return 1
        audio = client.get(job["audio"]["url"], follow_redirects=True)
        audio.raise_for_status()
        Path(out).write_bytes(audio.content)
    print(f"{out}: {job['audio']['duration_s']:.2f}s, job {job['id']}")
    return 0
