"""Checking a request against what an engine supports: a 422 rather than a silent ignore.

The API checks at submission against the engines that live workers published; the worker
checks again before synthesis, for jobs accepted while no worker was alive.
"""

from __future__ import annotations

from common.errors import EngineInputError
from common.schemas import EngineCapabilities, JobRequest
from common.voice_schemas import is_uploaded_voice


def unsupported(request: JobRequest, caps: EngineCapabilities) -> list[str]:
    """Each part of `request` that the engine cannot honour, as `field: reason`."""
    problems = []
    # An uploaded voice is the key's own, checked against the voice store, not the engine's list.
    uploaded = caps.voice_cloning or caps.voice_mapping is not None
    if is_uploaded_voice(request.voice) and not uploaded:
        problems.append(f"voice: {caps.engine} cannot speak in an uploaded voice")
    elif (
        request.voice is not None
        and not is_uploaded_voice(request.voice)
        and (request.voice not in caps.voices)
    ):
        problems.append(
            f"voice: {request.voice!r} is not a voice of the running engine ({caps.engine}); "
            f"choose one of {', '.join(caps.voices)}"
        )
    if request.voice_url is not None and not caps.voice_cloning:
        problems.append(f"voice_url: {caps.engine} cannot speak in the voice of a reference audio")
    if request.language is not None and request.language not in caps.languages:
        problems.append(f"language: {caps.engine} speaks {', '.join(caps.languages)}")
    if request.emotion is not None:
        audio = request.emotion.audio
        if audio is not None and not is_uploaded_voice(audio) and audio not in caps.voices:
            problems.append(f"emotion.audio: {audio!r} is not a known voice")
        for name in sorted(request.emotion.model_fields_set):
            # A reference by URL is an emotion audio like any other, once fetched.
            control = "audio" if name == "audio_url" else name
            if getattr(request.emotion, name) is not None and control not in caps.emotion:
                problems.append(f"emotion.{name}: not supported by {caps.engine}")
    if request.generation is not None:
        for name in sorted(request.generation.model_fields_set):
            if getattr(request.generation, name) is not None and name not in caps.generation:
                problems.append(f"generation.{name}: not supported by {caps.engine}")
    return problems


def check(request: JobRequest, caps: EngineCapabilities) -> None:
    problems = unsupported(request, caps)
    if problems:
        raise EngineInputError("; ".join(problems), code="unsupported_by_engine")
