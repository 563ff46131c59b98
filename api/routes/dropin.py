"""The original service's routes, served by ttsq's queue: `POST /synthesize`, `GET /speakers`.

A drop-in for the dubbing worker's client: only `TTS_SERVICE_URL` moves (and `X-Api-Key` is
added). Each request is a ttsq job like any other (listed, with metrics and warnings); the
answer is held until the job ends, up to TTS_SYNTHESIZE_WAIT_S (600 s, the client's own
timeout), without a thread per waiting request.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc
from api.dropin import (
    Speaker,
    Speakers,
    SynthesizeRequest,
    SynthesizeResponse,
    fingerprint,
    same_backend,
    to_job,
)
from api.errors import describe_errors
from api.submit import accept, wait_for_end
from common.errors import ApiError, ServiceUnavailable, Unprocessable
from common.netguard import Refused, checked_addresses, parse_cidrs
from common.schemas import ErrorEnvelope, JobRecord, JobStatus
from common.storage import CONTENT_TYPES, LocalStorage
from common.workers import alive_workers

router = APIRouter(tags=["drop-in (the original service's contract)"])
#: A job that failed for one of these will fail again: the answer is 422, not 500.
PERMANENT = {
    "engine_rejected_input",
    "unsupported_by_engine",
    "fetch_failed",
    "not_audio",
    "postprocess_failed",
    "voice_not_found",
}


class BadRequest(ApiError):
    code = "invalid_request"
    http_status = 400


class JobFailed(ApiError):
    http_status = 500


class StillRunning(ApiError):
    code = "timeout"
    http_status = 504


async def _parse(request: Request) -> SynthesizeRequest:
    try:
        return SynthesizeRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest("the body is not valid JSON", code="invalid_json") from None
        raise BadRequest(describe_errors(errors)) from None


def _check_prompt_url(svc: Svc, url: str) -> None:
    """Refuse an address the worker would refuse, now, with a 400 (the worker checks again)."""
    try:
        checked_addresses(url, parse_cidrs(svc.settings.fetch_allow_cidrs))
    except Refused as exc:
        raise BadRequest(f"prompt_audio_url: {exc}") from None
    except OSError as exc:
        host = urlsplit(url).hostname
        raise BadRequest(f"prompt_audio_url: cannot resolve {host} ({exc})") from None


def _check_engine(svc: Svc, body: SynthesizeRequest) -> None:
    synth = [w for w in alive_workers(svc.store.redis) if w.kind == "synth"]
    if not synth:
        raise ServiceUnavailable(
            "no synthesis worker is running; retry once one is up", code="engine_unavailable"
        )
    running = sorted({w.engine for w in synth if w.engine})
    if body.tts_backend and running and not any(same_backend(body.tts_backend, r) for r in running):
        raise BadRequest(
            f"tts_backend: {body.tts_backend!r} is not the running engine ({', '.join(running)})"
        )


def _audio_url(svc: Svc, job: JobRecord) -> str:
    assert job.audio is not None
    url = svc.storage.url(job.audio.key, svc.settings.url_ttl_s)
    if isinstance(svc.storage, LocalStorage) and not svc.settings.public_url:
        # Relative to the service: right whatever public address the client reached it by.
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}"
    return url


def _wants_audio(accept_header: str | None) -> bool:
    return bool(accept_header) and "audio/" in str(accept_header).lower()


@router.post(
    "/synthesize",
    response_model=SynthesizeResponse,
    responses={
        200: {"content": {"audio/wav": {}, "audio/mpeg": {}}},
        **{code: {"model": ErrorEnvelope} for code in (400, 401, 422, 500, 503, 504)},
    },
    summary="Synthesise one segment and answer when it is done (the original contract)",
)
async def synthesize(
    request: Request,
    svc: Svc,
    owner: Owner,
    accept_header: Annotated[str | None, Header(alias="accept")] = None,
) -> Response:
    body = await _parse(request)
    await run_in_threadpool(_check_engine, svc, body)
    if body.prompt_audio_url:
        await run_in_threadpool(_check_prompt_url, svc, body.prompt_audio_url)
    try:
        job_request = to_job(body)
        job, _ = await accept(svc, owner, job_request, request_key=fingerprint(body))
    except ValidationError as exc:
        raise BadRequest(describe_errors(exc.errors())) from None
    except Unprocessable as exc:
        raise BadRequest(exc.message, code=exc.code) from None
    job = await wait_for_end(svc, job, svc.settings.synthesize_wait_s)
    if job.status == JobStatus.succeeded and job.audio is not None:
        if _wants_audio(accept_header):
            data = await run_in_threadpool(svc.storage.get, job.audio.key)
            return Response(data, media_type=CONTENT_TYPES[job.audio.format])
        answer = SynthesizeResponse(
            audio_url=_audio_url(svc, job),
            duration_ms=round(job.audio.duration_s * 1000),
            sample_rate=job.audio.sample_rate,
            format=job.audio.format,
            file_size=job.audio.size_bytes,
        )
        return Response(answer.model_dump_json(), media_type="application/json")
    if not job.status.terminal:
        raise StillRunning(
            f"job {job.id} is still {job.status} after {svc.settings.synthesize_wait_s:g}s; "
            "sending the same request again waits for the same job"
        )
    error = job.error
    code = error.code if error else str(job.status)
    message = f"job {job.id} {job.status}: {error.message if error else 'no audio'}"
    failed = JobFailed(message, code=code)
    failed.http_status = 422 if code in PERMANENT else 500
    raise failed


@router.get(
    "/speakers",
    response_model=Speakers,
    responses={401: {"model": ErrorEnvelope}},
    summary="The voices this key can use (the original contract)",
)
async def speakers(svc: Svc, owner: Owner) -> Speakers:
    caps = await run_in_threadpool(svc.engine_view.capabilities)
    voices = sorted({v for c in caps for v in c.voices})
    return Speakers(speakers=[Speaker(id=v, name=v) for v in voices])
