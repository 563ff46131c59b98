"""Batches: many jobs in one request, one status, one `batch.completed` webhook."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Services, Svc
from api.errors import ERROR_RESPONSES
from api.submit import check, publish
from api.url_guard import IdempotencyKey, check_webhook_url
from common.errors import TtsqError
from common.jobs.batches import BatchStore
from common.jobs.idempotency import create_batch_once
from common.schemas.batches import (
    BATCH_ID_PATTERN,
    BatchItemResource,
    BatchRecord,
    BatchRequest,
    BatchResource,
)
from common.schemas.jobs import JobStatus

router = APIRouter(tags=["batches"])
BatchIdParam = Annotated[
    str, Path(pattern=BATCH_ID_PATTERN, description="32 lowercase hex characters")
]


def _resource(svc: Services, batches: BatchStore, batch: BatchRecord) -> BatchResource:
    counts = dict.fromkeys(JobStatus, 0)
    items = []
    for ref, job_id, job in zip(batch.refs, batch.job_ids, batches.jobs(batch), strict=True):
        status = job.status if job is not None else JobStatus.failed
        counts[status] += 1
        audio_url = None
        if job is not None and job.status == JobStatus.succeeded and job.audio is not None:
            audio_url = svc.storage.url(job.audio.key, svc.settings.url_ttl_s)
        code = job.error.code if job is not None and job.error else None
        if job is None:
            code = "expired"
        items.append(
            BatchItemResource(
                ref=ref, job_id=job_id, status=status, audio_url=audio_url, error_code=code
            )
        )
    return BatchResource(
        id=batch.id,
        status="completed" if batch.completed_at is not None else "running",
        created_at=batch.created_at,
        canceled_at=batch.canceled_at,
        completed_at=batch.completed_at,
        counts=counts,
        items=items,
        metadata=batch.metadata,
    )


async def _check_items(svc: Svc, owner: str, body: BatchRequest) -> None:
    """Every item as `POST /v1/jobs` would check it; the first bad one refuses the batch."""
    if body.webhook_url is not None:
        await run_in_threadpool(check_webhook_url, svc.settings, body.webhook_url)
    checked: set[str] = set()
    for index, request in enumerate(body.item_requests()):
        fingerprint = request.model_dump_json()
        if fingerprint in checked:
            continue
        try:
            await check(svc, owner, request)
        except TtsqError as exc:
            exc.message = f"items.{index} (ref {body.items[index].ref!r}): {exc.message}"
            raise
        checked.add(fingerprint)


@router.post(
    "/v1/batches",
    status_code=202,
    response_model=BatchResource,
    responses=ERROR_RESPONSES,
    summary="Submit up to 1000 jobs as one batch",
)
async def create_batch(
    body: BatchRequest,
    svc: Svc,
    owner: Owner,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> BatchResource:
    await _check_items(svc, owner, body)
    batches = BatchStore(svc.store)
    if idempotency_key is None:
        (batch, jobs), new = await run_in_threadpool(batches.create, owner, body), True
    else:
        (batch, jobs), new = await run_in_threadpool(
            create_batch_once, batches, owner, body, idempotency_key
        )
    if not new:
        response.headers["Idempotent-Replayed"] = "true"
    for job in jobs:
        await publish(svc, job)
    response.headers["Location"] = f"{svc.settings.base_url}/v1/batches/{batch.id}"
    return await run_in_threadpool(_resource, svc, batches, batch)


@router.get(
    "/v1/batches/{batch_id}",
    response_model=BatchResource,
    responses=ERROR_RESPONSES,
    summary="Read a batch: counts by status, every item's ref, status and audio URL",
)
async def get_batch(batch_id: BatchIdParam, svc: Svc, owner: Owner) -> BatchResource:
    batches = BatchStore(svc.store)
    batch = await run_in_threadpool(batches.get_owned, batch_id, owner)
    return await run_in_threadpool(_resource, svc, batches, batch)


@router.post(
    "/v1/batches/{batch_id}/cancel",
    response_model=BatchResource,
    responses=ERROR_RESPONSES,
    summary="Cancel every item of a batch that has not ended",
)
async def cancel_batch(batch_id: BatchIdParam, svc: Svc, owner: Owner) -> BatchResource:
    batches = BatchStore(svc.store)
    batch = await run_in_threadpool(batches.cancel, batch_id, owner)
    return await run_in_threadpool(_resource, svc, batches, batch)
