"""The original service's routes, served by ttsq's queue: `POST /synthesize`, `GET /speakers`.

A drop-in for the dubbing worker's client: only `TTS_SERVICE_URL` moves, with the key in its
user-info (`http://dub:<key>@host:6006`, sent as `Authorization: Basic`). Each request is a
ttsq job like any other (listed, with metrics and warnings); the answer is held until the job
ends, up to TTS_SYNTHESIZE_WAIT_S (600 s, the client's own timeout), without a thread per
waiting request.

That client retries only transport errors and 429/5xx, so what would be a 4xx on ttsq's own
API is not one here when the request can still be spoken:
- a prompt, emotion or speaker the running engine cannot use is dropped, and the default
  voice speaks (`on_unsupported: ignore`); a speaker id that names no voice, and a
  `tts_backend` that is not the running engine, likewise;
- each answer says what was dropped: `warnings` in the JSON and `X-TTS-Warnings` on every
  answer (Go's decoder ignores unknown fields).
While no synthesis worker is ready (a restart, a model still loading), the job is queued and
the request held, as long as one was seen within TTS_ENGINE_GRACE_S; a server that stops
answers its waiting requests at once with 503 and `Retry-After`, and the retry joins the job.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc, caller_label
from api.errors import describe_errors
from api.held import (
    BadRequest,
    engine_warnings,
    parse,
    succeeded,
    voice_names,
    warnings_header,
)
from api.submit import accept, wait_for_end
from api.url_guard import check_client_url
from common import keys
from common.broker import publish_merge
from common.errors import ServiceUnavailable, Unprocessable
from common.jobs.store import new_job_id
from common.schemas.dropin import (
    BatchRequest,
    BatchResponse,
    BatchSegment,
    Speaker,
    Speakers,
    SynthesizeRequest,
    SynthesizeResponse,
    TrackMerge,
    fingerprint,
    to_job,
)
from common.schemas.errors import ErrorEnvelope
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord
from common.schemas.voices import is_uploaded_voice
from common.storage import CONTENT_TYPES, LocalStorage

router = APIRouter(tags=["drop-in (the original service's contract)"])


async def known_voice(svc: Svc, owner: str, job: JobRequest) -> tuple[JobRequest, list[str]]:
    """An uploaded voice id the caller does not have is dropped (the default voice speaks),
    not refused: the drop-in's client never retries a 4xx. An engine voice the engine lacks
    is dropped by the worker (`on_unsupported: ignore`)."""
    if job.voice is None or not is_uploaded_voice(job.voice):
        return job, []
    voice = await run_in_threadpool(svc.voices.get, job.voice)
    if voice is not None and voice.owner == owner:
        return job, []
    warning = f"speaker_id: no voice {job.voice!r}; ignored, the engine's default voice spoke"
    return job.model_copy(update={"voice": None}), [warning]


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
    body = await parse(request, SynthesizeRequest)
    warnings = await engine_warnings(svc, body.tts_backend)
    since = svc.ends.mark()
    job, more = await _accept_one(svc, owner, body, caller=caller_label(request))
    job = succeeded(await wait_for_end(svc, job, svc.settings.synthesize_wait_s, since), svc)
    assert job.audio is not None
    warnings += more + job.warnings
    headers = warnings_header(warnings)
    if _wants_audio(accept_header):
        data = await run_in_threadpool(svc.storage.get, job.audio.key)
        return Response(data, media_type=CONTENT_TYPES[job.audio.format], headers=headers)
    answer = SynthesizeResponse(
        audio_url=_audio_url(svc, job),
        duration_ms=round(job.audio.duration_s * 1000),
        sample_rate=job.audio.sample_rate,
        format=job.audio.format,
        file_size=job.audio.size_bytes,
        warnings=warnings,
    )
    return Response(answer.model_dump_json(), media_type="application/json", headers=headers)


async def _accept_one(
    svc: Svc, owner: str, body: SynthesizeRequest, where: str = "", caller: str | None = None
) -> tuple[JobRecord, list[str]]:
    """The segment's job (a repeat of the request joins it), and what was dropped from it."""
    if body.prompt_audio_url:
        await run_in_threadpool(
            check_client_url,
            svc.settings,
            body.prompt_audio_url,
            field="prompt_audio_url",
            code="invalid_request",
        )
    try:
        job_request, warnings = await known_voice(svc, owner, to_job(body, caller=caller))
        job = (await accept(svc, owner, job_request, request_key=fingerprint(body))).job
    except ValidationError as exc:
        raise BadRequest(where + describe_errors(exc.errors())) from None
    except Unprocessable as exc:
        raise BadRequest(where + exc.message, code=exc.code) from None
    return job, [where + w for w in warnings]


@router.post(
    "/synthesize/batch",
    response_model=BatchResponse,
    responses={code: {"model": ErrorEnvelope} for code in (400, 401, 422, 500, 503, 504)},
    summary="Synthesise several segments, optionally merged into one track (the original contract)",
)
async def synthesize_batch(request: Request, svc: Svc, owner: Owner) -> BatchResponse:
    batch = await parse(request, BatchRequest)
    await engine_warnings(svc)
    if batch.merge and len({(r.output_format, r.sample_rate) for r in batch.requests}) > 1:
        raise BadRequest("requests: merge needs one output_format and sample_rate for all")
    caller = caller_label(request)
    since = svc.ends.mark()
    jobs = [
        (await _accept_one(svc, owner, body, f"requests[{i}]: ", caller))[0]
        for i, body in enumerate(batch.requests)
    ]
    wait_s = svc.settings.synthesize_wait_s
    ended = await asyncio.gather(*(wait_for_end(svc, job, wait_s, since) for job in jobs))
    done = [succeeded(job, svc, f"requests[{i}]: ") for i, job in enumerate(ended)]
    segments = [
        BatchSegment(
            idx=i,
            duration_ms=round(job.audio.duration_s * 1000) if job.audio else 0,
            audio_url=_audio_url(svc, job),
        )
        for i, job in enumerate(done)
    ]
    merged = await _merged(svc, owner, done) if batch.merge else None
    return BatchResponse(
        audio_url=_audio_url(svc, merged) if merged else None,
        duration_ms=sum(s.duration_ms for s in segments),
        segments=segments,
    )


async def _merged(svc: Svc, owner: str, jobs: list[JobRecord]) -> JobRecord:
    """The segments joined into one track by the I/O worker (`io_worker/merge.py`), waited
    for as a job's end is; 503 if it is not made in time (a retry joins the same segments)."""
    job_id = new_job_id()
    asked = TrackMerge(owner=owner, job_ids=[job.id for job in jobs])
    ttl_s = int(svc.settings.synthesize_wait_s) + 60
    await svc.store.aio().set(keys.track_merge(job_id), asked.model_dump_json(), ex=ttl_s)
    deadline = time.monotonic() + svc.settings.synthesize_wait_s
    with svc.ends.watch(job_id) as ended:
        await run_in_threadpool(publish_merge, svc.celery, job_id)
        while not svc.ends.stopping:
            merged = await svc.store.aio().get(keys.job(job_id))
            if merged:
                return JobRecord.model_validate_json(merged)
            try:
                await asyncio.wait_for(ended.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
            ended.clear()
    raise ServiceUnavailable(
        "the merged track is not ready yet (the I/O worker joins it); retry", retry_after_s=1
    )


@router.get(
    "/speakers",
    response_model=Speakers,
    responses={401: {"model": ErrorEnvelope}},
    summary="The voices this key can use (the original contract)",
)
async def speakers(svc: Svc, owner: Owner) -> Speakers:
    names = await voice_names(svc, owner)
    return Speakers(speakers=[Speaker(id=i, name=n) for i, n in names])
