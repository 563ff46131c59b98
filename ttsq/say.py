"""`ttsq say` and `ttsq status`: one job through the API, or how the service stands.

Both go through `ttsq.client`, to the service `ttsq.discovery.endpoint` finds: `--url`, else
`TTS_SERVICE_URL` (the key may be in its user-info), else the stack `ttsq up` is running,
else this machine's settings.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from common.settings import Settings
from ttsq.client import Client, TtsqClientError
from ttsq.discovery import endpoint

__all__ = ["endpoint", "say", "status"]


def quiet_http_logs() -> None:
    """httpx logs every request at INFO; a terminal user wants only the outcome."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


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
            _stack(client)
            for job in client.list_jobs(limit=10).data:
                line = f"{job.id}  {job.status.value:<9} {job.created_at:%Y-%m-%d %H:%M:%S}"
                if job.error:
                    line += f"  {job.error.code}"
                print(line)
    except TtsqClientError as exc:
        print(f"ttsq status: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _stack(client: Client) -> None:
    """Queue depth, workers (engine, device, GPU memory, job in hand), jobs of the last hour."""
    ready = client.ready()
    print(
        f"queue   {ready['queue_depth']} waiting; {ready['synth_workers_ready']} synthesis "
        f"worker(s) ready, {ready['io_workers']} I/O worker(s)"
    )
    for problem in ready["problems"]:
        print(f"problem {problem}")
    for worker in client.engine()["workers"]:
        print("worker  " + _worker_line(worker))
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    recent = [j for j in client.list_jobs(limit=100).data if j.created_at >= hour_ago]
    ended: dict[str, int] = {}
    for job in recent:
        ended[job.status.value] = ended.get(job.status.value, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(ended.items())) or "none"
    print(f"jobs    last hour (newest 100): {counts}")


def _worker_line(w: dict[str, Any]) -> str:
    line = f"{w['kind']:<5} {w['instance']}"
    if w["kind"] == "synth":
        line += f"  {w.get('engine') or 'loading'} on {w.get('device') or '?'}"
        if w.get("gpu_memory_mb"):
            line += f", GPU {w['gpu_memory_mb']:.0f} MB"
        line += f", {w.get('jobs_done', 0)} done"
        if w.get("current_job"):
            line += f", on {w['current_job']}"
    return line
