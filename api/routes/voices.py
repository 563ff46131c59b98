"""Each key's speaker library: upload, list, read and delete voices.

A voice is stored by its content (`voices/<sha256>.wav`) in the configured storage, where every
worker reads it on first use. The operator's voices (files on the workers) are shared with
every key and listed with `shared: true`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc
from api.errors import describe_errors
from api.voice_upload import check_voice_audio, delete_voice_and_audio, store_voice
from common.errors import ApiError, Conflict, NotFound, Unprocessable
from common.schemas.errors import ErrorEnvelope
from common.schemas.job_request import VOICE_ID_PATTERN
from common.schemas.voices import (
    VoiceList,
    VoiceMetadata,
    VoiceName,
    VoiceRecord,
    VoiceResource,
    is_uploaded_voice,
)

router = APIRouter(tags=["voices"])

#: Room in the body for the form's other fields and boundaries, beyond the file's own limit.
FORM_OVERHEAD_BYTES = 64 * 1024
CURSOR_PATTERN = r"^\d{1,12}(\.\d{1,12})?_v_[0-9a-f]{32}$"
VoiceIdParam = Annotated[str, Path(pattern=VOICE_ID_PATTERN)]
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 404, 409, 413, 415, 422, 503)
}
_METADATA = TypeAdapter(VoiceMetadata)
_NAME = TypeAdapter(VoiceName)


class TooLarge(ApiError):
    code = "payload_too_large"
    http_status = 413


def _resource(voice: VoiceRecord, warnings: list[str] | None = None) -> VoiceResource:
    return VoiceResource(
        id=voice.id,
        name=voice.name,
        duration_s=round(voice.duration_s, 3),
        sample_rate=voice.sample_rate,
        sha256=voice.sha256,
        metadata=voice.metadata,
        created_at=voice.created_at,
        warnings=warnings or [],
    )


async def _shared(svc: Svc) -> list[str]:
    caps = await run_in_threadpool(svc.engine_view.capabilities)
    return sorted({v for c in caps for v in c.voices})


def _form_fields(name: str, metadata: str | None) -> tuple[str, dict[str, str]]:
    try:
        checked_name = _NAME.validate_python(name)
    except ValidationError as exc:
        raise Unprocessable(describe_errors(exc.errors()).replace("body", "name", 1)) from None
    if metadata is None or not metadata.strip():
        return checked_name, {}
    try:
        return checked_name, _METADATA.validate_json(metadata)
    except ValidationError as exc:
        raise Unprocessable(
            f"metadata: a JSON object of at most 16 string values ({describe_errors(exc.errors())})"
        ) from None


@router.post(
    "/v1/voices",
    status_code=201,
    response_model=VoiceResource,
    responses=_ERRORS,
    summary="Upload a voice (WAV, FLAC, MP3, Ogg Vorbis or Opus; 1 s to TTS_MAX_VOICE_S)",
)
async def upload_voice(
    svc: Svc,
    owner: Owner,
    response: Response,
    file: Annotated[UploadFile, File(description="the speaker's recording")],
    name: Annotated[str, Form(max_length=200)],
    metadata: Annotated[
        str | None, Form(max_length=16 * 1024, description="a JSON object of strings")
    ] = None,
) -> VoiceResource:
    checked_name, meta = _form_fields(name, metadata)
    limit = svc.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"file: over the limit of {limit} bytes (TTS_MAX_UPLOAD_BYTES)")
    checked = await run_in_threadpool(check_voice_audio, data, max_s=svc.settings.max_voice_s)
    voice, new = await run_in_threadpool(
        store_voice, svc.voices, svc.storage, owner, checked, name=checked_name, metadata=meta
    )
    response.status_code = 201 if new else 200
    response.headers["Location"] = f"{svc.settings.base_url}/v1/voices/{voice.id}"
    return _resource(voice, checked.warnings)


@router.get(
    "/v1/voices",
    response_model=VoiceList,
    responses=_ERRORS,
    summary="The voices this key may use: the shared ones first, then its own, newest first",
)
async def list_voices(
    svc: Svc,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, max_length=64, description="`next_cursor` of a page"),
    ] = None,
) -> VoiceList:
    after = None
    shared: list[VoiceResource] = []
    if cursor:
        score, _, voice_id = cursor.partition("_")
        after = (float(score), voice_id)
    else:
        shared = [VoiceResource(id=v, name=v, shared=True) for v in await _shared(svc)]
    voices, last = await run_in_threadpool(
        lambda: svc.voices.list_owned(owner, after=after, limit=limit)
    )
    return VoiceList(
        data=shared + [_resource(v) for v in voices],
        next_cursor=f"{last[0]!r}_{last[1]}" if last else None,
    )


@router.get(
    "/v1/voices/{voice_id}", response_model=VoiceResource, responses=_ERRORS, summary="A voice"
)
async def get_voice(voice_id: VoiceIdParam, svc: Svc, owner: Owner) -> VoiceResource:
    if not is_uploaded_voice(voice_id):
        if voice_id in await _shared(svc):
            return VoiceResource(id=voice_id, name=voice_id, shared=True)
        raise NotFound(f"no voice {voice_id!r}", code="voice_not_found")
    return _resource(await run_in_threadpool(svc.voices.get_owned, voice_id, owner))


@router.delete(
    "/v1/voices/{voice_id}",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    summary="Delete a voice; queued jobs that name it fail with `voice_not_found`",
)
async def delete_voice(voice_id: VoiceIdParam, svc: Svc, owner: Owner) -> Response:
    if not is_uploaded_voice(voice_id):
        if voice_id in await _shared(svc):
            raise Conflict(
                f"{voice_id!r} is a shared voice, a file the operator placed on the workers",
                code="voice_shared",
            )
        raise NotFound(f"no voice {voice_id!r}", code="voice_not_found")
    await run_in_threadpool(delete_voice_and_audio, svc.voices, svc.storage, voice_id, owner)
    return Response(status_code=204)
