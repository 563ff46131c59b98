"""`ttsq say` and `ttsq status`: one job through the API, or how the service stands.

Both go through `ttsq.client`. The service is `--url`, else `TTS_SERVICE_URL`, else this
machine's API (`TTS_PUBLIC_URL` or `http://TTS_HOST:TTS_PORT`); the key is `--key`, else
`TTS_API_KEY` (or the first of `TTS_API_KEYS`), else the one `ttsq up` keeps in the data dir.
"""

from __future__ import annotations

import logging
import os
import sys

from common.settings import Settings
from ttsq.client import Client, TtsqClientError


def quiet_http_logs() -> None:
    """httpx logs every request at INFO; a terminal user wants only the outcome."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def endpoint(settings: Settings, url: str | None, key: str | None) -> tuple[str, str | None]:
    base = url or os.environ.get("TTS_SERVICE_URL") or settings.base_url
    if key:
        return base, key
    keys = settings.parsed_api_keys()
    if keys:
        return base, next(iter(keys))
    path = settings.data_dir / "api_key"
    return base, path.read_text().strip() if path.exists() else None


def say(
    settings: Settings, *, text: str, out: str, voice: str | None, url: str | None, key: str | None
) -> int:
    quiet_http_logs()
    base, api_key = endpoint(settings, url, key)
    fields = {"voice": voice} if voice else {}
    try:
        with Client(base, api_key or "", timeout=90) as client:
            job = client.submit(text, wait_s=60, **fields)
            if not job.status.terminal:
                job = client.wait(job, timeout=3600)
            if job.audio is None:
                error = f"{job.error.code}: {job.error.message}" if job.error else None
                print(f"job {job.id} {job.status.value}: {error}", file=sys.stderr)
                return 1
            client.download(job, out)
    except TtsqClientError as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 1
    print(f"{out}: {job.audio.duration_s:.2f}s, job {job.id}")
    return 0


def status(settings: Settings, *, job_id: str | None, url: str | None, key: str | None) -> int:
    """With a job id, that job; without, the service's health and the newest jobs."""
    quiet_http_logs()
    base, api_key = endpoint(settings, url, key)
    try:
        with Client(base, api_key or "") as client:
            if job_id:
                job = client.get(job_id)
                print(job.model_dump_json(indent=2, exclude={"input"}))
                return 0
            health = client.health()
            print(f"{base}: {health.status}" + (f" ({health.message})" if health.message else ""))
            for job in client.list_jobs(limit=10).data:
                line = f"{job.id}  {job.status.value:<9} {job.created_at:%Y-%m-%d %H:%M:%S}"
                if job.error:
                    line += f"  {job.error.code}"
                print(line)
    except TtsqClientError as exc:
        print(f"ttsq status: {exc.message}", file=sys.stderr)
        return 1
    return 0
