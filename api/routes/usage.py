"""`GET /v1/usage`: what a key used over a period, and how long the GPUs have sat idle.

A rented GPU costs the same busy or idle: the operator reads here whether to shut one down.
Figures come from the key's job records (`metrics.gpu_s`, `audio.duration_s`) and the workers'
heartbeats; the estimate is GPU seconds × TTS_GPU_PRICE_PER_HOUR, engine time only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc
from common.jobs.store import utcnow
from common.schemas.errors import ErrorEnvelope
from common.schemas.jobs import JobStatus
from common.worker.registry import alive_workers, held

router = APIRouter(tags=["usage"])


class WorkerIdle(BaseModel):
    instance: str
    engine: str | None
    busy: bool
    idle_s: float


class Usage(BaseModel):
    since: datetime
    until: datetime
    jobs: int
    succeeded: int
    failed: int
    gpu_seconds: float
    audio_seconds: float
    #: gpu_seconds × TTS_GPU_PRICE_PER_HOUR / 3600; None when no price is set.
    estimated_cost: float | None
    workers: list[WorkerIdle]


def _usage(svc: Svc, owner: str, since: datetime, until: datetime) -> Usage:
    client = svc.store.redis
    jobs = svc.store.created_between(owner, since, until)
    gpu = sum(j.metrics.gpu_s or 0.0 for j in jobs)
    price = svc.settings.gpu_price_per_hour
    now = utcnow()
    workers = [
        WorkerIdle(
            instance=w.instance,
            engine=w.engine,
            busy=bool(held(w)),
            idle_s=0.0
            if held(w)
            else round((now - (w.last_job_at or w.started_at)).total_seconds(), 1),
        )
        for w in alive_workers(client)
        if w.kind == "synth"
    ]
    return Usage(
        since=since,
        until=until,
        jobs=len(jobs),
        succeeded=sum(j.status == JobStatus.succeeded for j in jobs),
        failed=sum(j.status == JobStatus.failed for j in jobs),
        gpu_seconds=round(gpu, 3),
        audio_seconds=round(sum(j.audio.duration_s for j in jobs if j.audio), 3),
        estimated_cost=round(gpu * price / 3600, 4) if price else None,
        workers=workers,
    )


@router.get(
    "/v1/usage",
    response_model=Usage,
    responses={401: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}},
    summary="Jobs, GPU seconds and audio seconds of this key over a period; GPU idle time",
)
async def usage(
    svc: Svc,
    owner: Owner,
    since: Annotated[datetime | None, Query(description="default: 24 hours ago")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
) -> Usage:
    end = until or utcnow()
    start = since or end - timedelta(hours=24)
    return await run_in_threadpool(_usage, svc, owner, start, end)
