"""What the drop-in routes share: the original service's `/synthesize`, OpenAI's speech and
index-tts-vllm's `/tts_url` (`api/routes/dropin.py`, `api/routes/speech.py`).

Their clients retry only transport errors and 429/5xx and never read ttsq's job API, so each
request is held until its job ends and answered in the client's contract: a bad body is a 400
naming the field, what the engine cannot do is a warning (`X-TTS-Warnings`), a job that will
fail again is a 422, one worth retrying a 500, one still running a 504, and a restarting
service or one with no engine a 503 with `Retry-After`.
"""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import quote

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Services
from api.errors import describe_errors
from common.errors import ApiError, ServiceUnavailable
from common.schemas.dropin import same_backend
from common.schemas.jobs import JobRecord, JobStatus
from common.worker.registry import synth_seen_s_ago

T = TypeVar("T", bound=BaseModel)
WARNINGS_HEADER = "X-TTS-Warnings"
#: Printable ASCII but `%`, which starts an escape: what a header value carries as it is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


class BadRequest(ApiError):
    code = "invalid_request"
    http_status = 400


class JobFailed(ApiError):
    http_status = 500


class StillRunning(ApiError):
    code = "timeout"
    http_status = 504


async def parse(request: Request, model: type[T]) -> T:
    """The body as `model`; a 400 naming the field, or `invalid_json`."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors()
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest("the body is not valid JSON", code="invalid_json") from None
        raise BadRequest(describe_errors(errors)) from None


async def engine_warnings(svc: Services, tts_backend: str | None = None) -> list[str]:
    """503 if no synthesis worker is up or was seen within TTS_ENGINE_GRACE_S (loading
    counts); else what the request will not get from the running engine."""
    synth = [b for b in await svc.engine_view.beats_async() if b.kind == "synth"]
    if not synth:
        grace = svc.settings.engine_grace_s
        seen = await synth_seen_s_ago(svc.aredis)
        if seen is None or seen > grace:
            raise ServiceUnavailable(
                f"no synthesis worker is running, nor was one seen in the last {grace:g} s "
                "(TTS_ENGINE_GRACE_S); retry once one is up",
                code="engine_unavailable",
                retry_after_s=5,
            )
    running = sorted({b.engine for b in synth if b.engine})
    if tts_backend and running and not any(same_backend(tts_backend, r) for r in running):
        return [f"tts_backend: {tts_backend!r} is not running; {', '.join(running)} spoke"]
    return []


async def voice_names(svc: Services, owner: str) -> list[tuple[str, str]]:
    """(id, name) of every voice the key can name: the engines', then its own uploads."""
    caps = await run_in_threadpool(svc.engine_view.capabilities)
    engine = sorted({v for c in caps for v in c.voices})
    own, _ = await run_in_threadpool(lambda: svc.voices.list_owned(owner, after=None, limit=1000))
    return [(v, v) for v in engine] + [(v.id, v.name) for v in own]


def warnings_header(warnings: list[str]) -> dict[str, str]:
    """`X-TTS-Warnings`: the warnings joined with "; ", non-ASCII percent-encoded."""
    if not warnings:
        return {}
    return {WARNINGS_HEADER: quote("; ".join(warnings), safe=_HEADER_SAFE)}


def succeeded(job: JobRecord, svc: Services, where: str = "") -> JobRecord:
    """The job if it succeeded; otherwise the error the original client should see."""
    if job.status == JobStatus.succeeded and job.audio is not None:
        return job
    if not job.status.terminal and svc.ends.stopping:
        raise ServiceUnavailable(
            f"{where}the service is restarting; job {job.id} stays {job.status}, and the "
            "same request sent again joins it",
            code="restarting",
            retry_after_s=1,
        )
    if not job.status.terminal:
        raise StillRunning(
            f"{where}job {job.id} is still {job.status} after "
            f"{svc.settings.synthesize_wait_s:g}s; sending the same request again waits for it"
        )
    error = job.error
    code = error.code if error else str(job.status)
    message = f"{where}job {job.id} {job.status}: {error.message if error else 'no audio'}"
    failed = JobFailed(message, code=code)
    # The job's own error says whether the same request may succeed later (a 500, which
    # the client's retry loop tries again) or never will (a 422, which it does not).
    failed.http_status = 422 if error is not None and error.retryable is False else 500
    raise failed
