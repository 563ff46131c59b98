"""Webhook routes: the owner's signing secret, and every delivery of a job or batch."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc
from api.errors import ERROR_RESPONSES
from api.routes.batches import BatchIdParam
from api.routes.jobs import JobIdParam
from common.jobs.batches import BatchStore
from common.schemas.webhooks import DeliveryList, WebhookSecret
from common.webhooks import deliveries_of, secret_for

router = APIRouter(tags=["webhooks"])


@router.get(
    "/v1/webhook-secret",
    response_model=WebhookSecret,
    responses=ERROR_RESPONSES,
    summary="The secret that signs this API key's webhooks (Standard Webhooks, whsec_…)",
)
async def webhook_secret(svc: Svc, owner: Owner) -> WebhookSecret:
    secret = await run_in_threadpool(secret_for, owner, svc.settings, svc.store.redis)
    return WebhookSecret(secret=secret)


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    response_model=DeliveryList,
    responses=ERROR_RESPONSES,
    summary="Every webhook delivery of a job, with each attempt",
)
async def job_deliveries(job_id: JobIdParam, svc: Svc, owner: Owner) -> DeliveryList:
    await run_in_threadpool(svc.store.get_owned, job_id, owner)
    return DeliveryList(data=await run_in_threadpool(deliveries_of, svc.store.redis, job_id))


@router.get(
    "/v1/batches/{batch_id}/deliveries",
    response_model=DeliveryList,
    responses=ERROR_RESPONSES,
    summary="Every webhook delivery of a batch (`batch.completed`), with each attempt",
)
async def batch_deliveries(batch_id: BatchIdParam, svc: Svc, owner: Owner) -> DeliveryList:
    await run_in_threadpool(BatchStore(svc.store).get_owned, batch_id, owner)
    return DeliveryList(data=await run_in_threadpool(deliveries_of, svc.store.redis, batch_id))
