"""OpenAI's speech routes and index-tts-vllm's `/tts_url`, served by ttsq's queue.

Each request is an ordinary ttsq job (listed, metered, cancellable), held until it ends, up to
TTS_SYNTHESIZE_WAIT_S, then answered with the audio itself. What the request asked and this
deployment lacks is named in `X-TTS-Warnings` rather than refused (`api/speech.py`).
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc, caller_label
from api.errors import describe_errors, error_response
from api.held import (
    BadRequest,
    engine_warnings,
    parse,
    succeeded,
    voice_names,
    warnings_header,
)
from api.speech import (
    Library,
    Mapped,
    SpeechFormat,
    SpeechRequest,
    SpeechVoice,
    SpeechVoices,
    TtsUrlRequest,
    fingerprint,
    media_type,
    speech_job,
    tts_url_job,
)
from api.submit import accept, wait_for_end
from api.text import check_text
from common.errors import ApiError, Unprocessable
from common.schemas.errors import ErrorEnvelope
from common.schemas.jobs import JobRecord
from common.schemas.workers import EngineCapabilities

M = TypeVar("M", SpeechRequest, TtsUrlRequest)
router = APIRouter(tags=["drop-in (OpenAI speech, index-tts-vllm)"])
JOB_HEADER = "X-TTS-Job-Id"
_AUDIO = ("audio/mpeg", "audio/wav", "audio/flac", "audio/ogg; codecs=opus", "audio/pcm")
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 422, 500, 503, 504)
}


def _check_text(text: str, field: str, svc: Svc) -> None:
    try:
        check_text(text, max_chars=svc.settings.max_text_chars)
    except Unprocessable as exc:
        raise BadRequest(field + exc.message.removeprefix("text"), code=exc.code) from None


async def _engines(svc: Svc) -> list[EngineCapabilities]:
    """What the ready engines can do (none while the only one restarts or loads); 503 when
    none is up or was seen within TTS_ENGINE_GRACE_S (`engine_warnings`)."""
    await engine_warnings(svc)
    return svc.engine_view.capabilities(await svc.engine_view.beats_async())


async def _library(svc: Svc, owner: str, caps: list[EngineCapabilities], *wanted: str) -> Library:
    engine = frozenset(v for c in caps for v in c.voices)
    if all(name in engine for name in wanted):
        return Library(engine)  # no need to read the caller's uploads
    own, _ = await run_in_threadpool(lambda: svc.voices.list_owned(owner, after=None, limit=1000))
    return Library(engine, tuple(SpeechVoice(id=v.id, name=v.name) for v in own))


def _headers(job: JobRecord, warnings: list[str]) -> dict[str, str]:
    return {JOB_HEADER: job.id, **warnings_header([*warnings, *job.warnings])}


async def _answer(svc: Svc, owner: str, route: str, request: Request, mapped: Mapped) -> Response:
    caller = caller_label(request)
    if caller:
        mapped.job.metadata["caller"] = caller
    since = svc.ends.mark()
    try:
        accepted = await accept(svc, owner, mapped.job, request_key=fingerprint(route, mapped.job))
    except Unprocessable as exc:
        raise BadRequest(exc.message, code=exc.code) from None
    job = await wait_for_end(svc, accepted.job, svc.settings.synthesize_wait_s, since)
    headers = _headers(job, mapped.warnings)
    try:
        job = succeeded(job, svc)
    except ApiError as exc:  # answered here, to keep the job's id and warnings in the headers
        return error_response(exc, headers)
    assert job.audio is not None
    data = await run_in_threadpool(svc.storage.get, job.audio.key)
    return Response(data, media_type=media_type(job.audio.format), headers=headers)


async def _speech(
    request: Request, svc: Svc, owner: str, route: str, default_format: SpeechFormat
) -> Response:
    body = await parse(request, SpeechRequest)
    _check_text(body.input, "input", svc)
    caps = await _engines(svc)
    voice = body.voice if isinstance(body.voice, str) else body.voice.id if body.voice else None
    library = await _library(svc, owner, caps, *([voice] if voice else []))
    try:
        mapped = speech_job(
            body,
            route=route,
            default_format=default_format,
            library=library,
            text_emotion=bool(caps) and all("text" in c.emotion for c in caps),
        )
    except ValidationError as exc:
        raise BadRequest(describe_errors(exc.errors())) from None
    return await _answer(svc, owner, route, request, mapped)


_SPEECH_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {t: {} for t in _AUDIO}, "description": "The audio"},
    **_ERRORS,
}
_SPEECH_DESCRIPTION = (
    "OpenAI's body: `model` (recorded), `input`, `voice` (an engine voice, or one of the key's "
    "uploaded voices by name or id; anything else speaks in the default voice with a "
    "warning), `response_format` (mp3, opus, flac, wav, pcm: raw 16-bit 24 kHz), `speed` "
    "(0.5-2 here), `instructions` (an emotion description where the engine takes one, else "
    "ignored with a warning). Warnings come in `X-TTS-Warnings`, the job's id in "
    "`X-TTS-Job-Id`."
)


@router.post(
    "/v1/audio/speech",
    response_class=Response,
    responses=_SPEECH_RESPONSES,
    summary="OpenAI's speech API: the audio of `input`",
    description=_SPEECH_DESCRIPTION,
)
async def openai_speech(request: Request, svc: Svc, owner: Owner) -> Response:
    return await _speech(request, svc, owner, "audio/speech", "mp3")


@router.post(
    "/audio/speech",
    response_class=Response,
    responses=_SPEECH_RESPONSES,
    summary="The same at index-tts-vllm v1's path, which answers WAV unless asked otherwise",
    description=_SPEECH_DESCRIPTION,
)
async def indextts_vllm_speech(request: Request, svc: Svc, owner: Owner) -> Response:
    # index-tts-vllm v1 always answered WAV, and its clients send no response_format.
    return await _speech(request, svc, owner, "audio/speech", "wav")


@router.post(
    "/tts_url",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}, "description": "The WAV"}, **_ERRORS},
    summary="index-tts-vllm v2's /tts_url: a WAV in a voice of the key's library",
    description="`text`, `spk_audio_path` (its file stem names an uploaded voice or an engine "
    "voice; else the default voice, with a warning), `emo_control_method` (0 the speaker's, "
    "1 `emo_ref_path`'s, 2 `emo_vec`, 3 `emo_text`), `emo_weight`, `emo_random`, "
    "`max_text_tokens_per_sentence`. What the engine cannot do is dropped, named in "
    "`X-TTS-Warnings`.",
)
async def tts_url(request: Request, svc: Svc, owner: Owner) -> Response:
    body = await parse(request, TtsUrlRequest)
    _check_text(body.text, "text", svc)
    caps = await _engines(svc)
    paths = [p for p in (body.speaker_path(), body.emo_ref_path) if p]
    library = await _library(svc, owner, caps, *paths)
    try:
        mapped = tts_url_job(body, library=library)
    except ValidationError as exc:
        raise BadRequest(describe_errors(exc.errors())) from None
    return await _answer(svc, owner, "tts_url", request, mapped)


@router.get(
    "/v1/audio/voices",
    response_model=SpeechVoices,
    responses={401: {"model": ErrorEnvelope}},
    summary="The voices `voice` can name: the engine's, then the key's uploaded ones",
)
async def voices(svc: Svc, owner: Owner) -> SpeechVoices:
    names = await voice_names(svc, owner)
    return SpeechVoices(voices=[SpeechVoice(id=i, name=n) for i, n in names])
