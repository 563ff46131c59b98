"""Checking a request against what an engine supports.

ttsq's own API refuses what the running engine cannot do (a 422 rather than a silent
ignore). A request with `on_unsupported: "ignore"` (what the drop-in routes send: their
clients never retry a 4xx) is `relax`ed instead: each part the engine lacks is dropped and
named in a warning, and the default voice speaks.

The API checks at submission against the engines that live workers published; the worker
checks again before synthesis, for jobs accepted while no worker was alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import EngineInputError
from common.schemas.job_request import JobRequest
from common.schemas.voices import is_uploaded_voice
from common.schemas.workers import EngineCapabilities

#: The fields of an emotion that say what it is; with none of them left, there is no emotion.
SOURCES = ("audio", "audio_url", "vector", "text", "random")


@dataclass(frozen=True)
class Problem:
    #: The request's field, dotted (`voice`, `emotion.vector`, `generation.top_p`).
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def problems(request: JobRequest, caps: EngineCapabilities) -> list[Problem]:
    """Each part of `request` that the engine cannot honour."""
    found = []
    # An uploaded voice is the key's own, checked against the voice store, not the engine's list.
    uploaded = caps.voice_cloning or caps.voice_mapping is not None
    if is_uploaded_voice(request.voice) and not uploaded:
        found.append(Problem("voice", f"{caps.engine} cannot speak in an uploaded voice"))
    elif (
        request.voice is not None
        and not is_uploaded_voice(request.voice)
        and (request.voice not in caps.voices)
    ):
        found.append(
            Problem(
                "voice",
                f"{request.voice!r} is not a voice of the running engine ({caps.engine}); "
                f"choose one of {', '.join(caps.voices)}",
            )
        )
    if request.voice_url is not None and not caps.voice_cloning:
        found.append(
            Problem("voice_url", f"{caps.engine} cannot speak in the voice of a reference audio")
        )
    if request.language is not None and request.language not in caps.languages:
        found.append(Problem("language", f"{caps.engine} speaks {', '.join(caps.languages)}"))
    if request.emotion is not None:
        audio = request.emotion.audio
        if audio is not None and not is_uploaded_voice(audio) and audio not in caps.voices:
            found.append(Problem("emotion.audio", f"{audio!r} is not a known voice"))
        for name in sorted(request.emotion.model_fields_set):
            # A reference by URL is an emotion audio like any other, once fetched.
            control = "audio" if name == "audio_url" else name
            if getattr(request.emotion, name) is not None and control not in caps.emotion:
                found.append(Problem(f"emotion.{name}", f"not supported by {caps.engine}"))
    if request.generation is not None:
        for name in sorted(request.generation.model_fields_set):
            if getattr(request.generation, name) is not None and name not in caps.generation:
                found.append(Problem(f"generation.{name}", f"not supported by {caps.engine}"))
    return found


def unsupported(request: JobRequest, caps: EngineCapabilities) -> list[str]:
    """`problems` as `field: reason` lines."""
    return [str(p) for p in problems(request, caps)]


def relax(request: JobRequest, caps: EngineCapabilities) -> tuple[JobRequest, list[str]]:
    """`request` less each part the engine cannot honour, and a warning naming each."""
    found = problems(request, caps)
    if not found:
        return request, []
    top: dict[str, object] = {}
    emotion: dict[str, object] = {}
    generation: dict[str, object] = {}
    for problem in found:
        group, _, name = problem.field.partition(".")
        if group == "emotion":
            emotion[name] = None
        elif group == "generation":
            generation[name] = None
        else:
            top[group] = None
    if emotion and request.emotion is not None:
        kept = request.emotion.model_copy(update=emotion)
        top["emotion"] = kept if any(getattr(kept, n) is not None for n in SOURCES) else None
    if generation and request.generation is not None:
        top["generation"] = request.generation.model_copy(update=generation)
    ignored = [f"{p}; ignored" for p in found]
    if "voice" in top or "voice_url" in top:
        ignored.append("the engine's default voice spoke")
    return request.model_copy(update=top), ignored


def admit(request: JobRequest, caps: EngineCapabilities) -> tuple[JobRequest, list[str]]:
    """The request the engine runs, and the warnings for what it dropped: refused
    (`EngineInputError`) unless the request says to ignore what the engine lacks."""
    if request.on_unsupported == "ignore":
        return relax(request, caps)
    found = unsupported(request, caps)
    if found:
        raise EngineInputError("; ".join(found), code="unsupported_by_engine")
    return request, []
