"""Build the FastAPI app from settings: `create_app(Settings(...))`; `ttsq api` serves it."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from api import errors
from api.allowlist import AllowList
from api.deps import Services
from api.ends import EndWatcher
from api.engine_check import EngineView
from api.limits import BodyLimit
from api.routes import batches, dropin, jobs, metrics, speech, system, usage, voices, webhooks
from common.broker import make_celery
from common.jobs.store import JobStore
from common.netguard import parse_cidrs
from common.redis_client import connect_redis, connect_redis_async, redis_url
from common.settings import Settings
from common.storage import make_storage
from common.voicestore import VoiceStore

log = logging.getLogger(__name__)
#: The routes whose bodies may be as large as `TTS_MAX_BATCH_BODY_BYTES`.
BATCH_PATHS = ("/v1/batches", "/synthesize/batch")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.require_safe_exposure()
    # Two clients on one Redis: blocking calls run in the thread pool, and the hot paths
    # (submit, read, wait, health) use the event loop's, with no thread hop.
    client, aclient = connect_redis(settings), connect_redis_async(settings)
    services = Services(
        settings=settings,
        store=JobStore(client, aclient=aclient, job_ttl_s=settings.job_ttl_s),
        aredis=aclient,
        storage=make_storage(settings),
        celery=make_celery(settings),
        engine_view=EngineView(client, aclient),
        voices=VoiceStore(client),
        ends=EndWatcher(redis_url(settings)),
        api_keys=settings.parsed_api_keys(),
    )
    public = settings.docs_served
    app = FastAPI(
        title="ttsq",
        version="0.1.0",
        summary="Text-to-speech jobs: submit, then poll, wait, or get a signed webhook.",
        openapi_url="/openapi.json" if public else None,
        docs_url="/docs" if public else None,
        redoc_url="/redoc" if public else None,
    )
    app.state.services = services
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        uploads={"/v1/voices": settings.max_upload_bytes + voices.FORM_OVERHEAD_BYTES},
        larger={path: settings.max_batch_body_bytes for path in BATCH_PATHS},
    )
    if settings.allowed_cidrs:
        app.add_middleware(
            AllowList,
            allowed=parse_cidrs(settings.allowed_cidrs),
            trusted=parse_cidrs(settings.trusted_proxies),
        )
    errors.install(app)
    app.include_router(system.router)
    if not public:
        app.include_router(system.keyed_openapi)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(webhooks.router)
    app.include_router(dropin.router)
    app.include_router(speech.router)
    app.include_router(usage.router)
    app.include_router(voices.router)
    app.include_router(metrics.router)
    return app
