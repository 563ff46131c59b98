"""`GET /metrics`: Prometheus's text format, behind the API key like every other route.

Prometheus sends the key as a bearer token (`authorization: {credentials: <key>}` in its
scrape config; `Authorization: Bearer` is accepted everywhere). The figures come from Redis,
so they cover every worker, wherever it runs (`api/metrics.py`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc
from api.metrics import registry

router = APIRouter(tags=["system"])


def _registry(request: Request, svc: Svc) -> CollectorRegistry:
    # Built once per app: the collector holds only the Redis client.
    if not hasattr(request.app.state, "metrics"):
        request.app.state.metrics = registry(svc.store.redis)
    reg: CollectorRegistry = request.app.state.metrics
    return reg


@router.get(
    "/metrics",
    summary="Prometheus metrics of the whole service",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def prometheus_metrics(request: Request, svc: Svc, _: Owner) -> Response:
    body = await run_in_threadpool(generate_latest, _registry(request, svc))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
