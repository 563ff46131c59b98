"""Liveness, readiness, the running engine, and signed local files."""

from __future__ import annotations

from typing import Annotated, Literal

import redis
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc
from common.audio.codec import AudioSupport
from common.audio.codec import support as audio_support
from common.errors import NotFound, ServiceUnavailable, StorageUnavailable
from common.schemas.errors import ErrorEnvelope
from common.schemas.workers import EngineCapabilities, WorkerHeartbeat
from common.storage import CONTENT_TYPES, LocalStorage
from common.worker.registry import alive_workers, alive_workers_async

router = APIRouter(tags=["system"])


class Health(BaseModel):
    """The original service's health answer, from the workers' heartbeats. Always a 200:
    `degraded` says no synthesis worker has its engine loaded (or the queue is unreachable)."""

    status: Literal["healthy", "degraded"]
    model_loaded: bool
    backend: str | None
    index_tts2_loaded: bool
    message: str


class Readiness(BaseModel):
    ready: bool
    redis: bool
    storage: bool
    synth_workers_ready: int
    io_workers: int
    queue_depth: int
    problems: list[str]


class EngineInfo(BaseModel):
    engines: list[EngineCapabilities]
    workers: list[WorkerHeartbeat]
    #: The formats and ranges every job's audio can be delivered in (whatever the engine).
    audio: AudioSupport


@router.get("/health", response_model=Health, summary="Liveness (no key needed)")
async def health(svc: Svc) -> Health:
    try:
        workers = await alive_workers_async(svc.aredis)
    except (redis.RedisError, OSError):
        return Health(
            status="degraded",
            model_loaded=False,
            backend=None,
            index_tts2_loaded=False,
            message="the job queue is unreachable",
        )
    engines = sorted({w.engine for w in workers if w.kind == "synth" and w.ready and w.engine})
    loading = sum(1 for w in workers if w.kind == "synth" and not w.ready)
    if engines:
        message = f"{len(engines)} engine(s) ready: {', '.join(engines)}"
    elif loading:
        message = "a synthesis worker is loading its engine"
    else:
        message = "no synthesis worker is running"
    return Health(
        status="healthy" if engines else "degraded",
        model_loaded=bool(engines),
        backend=engines[0] if engines else None,
        index_tts2_loaded=any(e.startswith("index_tts2") for e in engines),
        message=message,
    )


# Uptime monitors probe with HEAD; kept out of the schema, where it would only repeat GET.
@router.head("/health", include_in_schema=False)
async def health_head() -> Response:
    return Response(media_type="application/json")


#: `/openapi.json` behind the key, when TTS_PUBLIC_DOCS is off.
keyed_openapi = APIRouter()


@keyed_openapi.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, owner: Owner) -> JSONResponse:
    return JSONResponse(request.app.openapi())


def _readiness(svc: Svc) -> Readiness:
    problems: list[str] = []
    try:
        svc.store.redis.ping()
    except redis.RedisError as exc:
        return Readiness(
            ready=False,
            redis=False,
            storage=False,
            synth_workers_ready=0,
            io_workers=0,
            queue_depth=0,
            problems=[f"Redis is unreachable ({type(exc).__name__})"],
        )
    try:
        svc.storage.check_writable()
        storage_ok = True
    except StorageUnavailable as exc:
        storage_ok = False
        problems.append(exc.message)
    workers = alive_workers(svc.store.redis)
    synth = [w for w in workers if w.kind == "synth" and w.ready]
    io = [w for w in workers if w.kind == "io"]
    if not synth:
        problems.append("no synthesis worker with a loaded engine is alive")
    if not io:
        problems.append("no I/O worker is alive: finished audio will not reach storage")
    return Readiness(
        ready=not problems,
        redis=True,  # it answered the ping above
        storage=storage_ok,
        synth_workers_ready=len(synth),
        io_workers=len(io),
        queue_depth=svc.store.queue_depth(),
        problems=problems,
    )


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
    summary="Readiness: Redis, storage, workers, queue depth",
)
async def ready(svc: Svc, owner: Owner) -> Readiness:
    result = await run_in_threadpool(_readiness, svc)
    if not result.ready:
        raise ServiceUnavailable("not ready: " + "; ".join(result.problems), code="not_ready")
    return result


@router.get("/v1/engine", response_model=EngineInfo, summary="What the running engines support")
async def engine(svc: Svc, owner: Owner) -> EngineInfo:
    workers = await run_in_threadpool(alive_workers, svc.store.redis)
    synth = [w for w in workers if w.kind == "synth"]
    engines = {w.capabilities.engine: w.capabilities for w in synth if w.capabilities}
    # The key's uploaded voices, read live: usable on every worker as soon as they exist.
    own = await run_in_threadpool(svc.voices.ids_owned, owner)
    return EngineInfo(
        engines=[c.model_copy(update={"voices": [*c.voices, *own]}) for c in engines.values()],
        workers=synth,
        audio=audio_support(svc.settings.max_stretch),
    )


@router.get(
    "/v1/files/{key:path}",
    response_class=FileResponse,
    responses={404: {"model": ErrorEnvelope}},
    summary="A stored file, through a signed, expiring URL (the signature is the key)",
)
async def signed_file(
    key: str,
    svc: Svc,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    sig: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
) -> FileResponse:
    if not isinstance(svc.storage, LocalStorage):
        raise NotFound("files are served by the object store", code="file_not_found")
    path = svc.storage.verify(key, expires, sig)
    return FileResponse(path, media_type=CONTENT_TYPES[path.suffix[1:]], filename=path.name)
