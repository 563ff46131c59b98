"""ttsq's own job routes: submit, read, list, cancel, fetch audio."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, Svc
from api.errors import ERROR_RESPONSES
from api.eta import queued_eta_s
from api.resources import job_resource
from api.submit import OUTAGE, accept, wait_for_end
from api.url_guard import IdempotencyKey
from common.errors import Conflict
from common.schemas.job_request import JOB_ID_PATTERN, JobRequest
from common.schemas.jobs import JobList, JobRecord, JobResource, JobStatus

router = APIRouter(tags=["jobs"])

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
#: A listing cursor: the last job's creation score and id, which together never tie.
CURSOR_PATTERN = r"^\d{1,12}(\.\d{1,12})?_[0-9a-f]{32}$"
JobIdParam = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="32 lowercase hex characters")]


def _prefer_wait(prefer: str | None, limit: float) -> float | None:
    if not prefer:
        return None
    match = _PREFER_WAIT.search(prefer)
    return min(float(match.group(1)), limit) if match else None


async def _resource(
    svc: Svc, job: JobRecord, place: tuple[int | None, float | None] | None = None
) -> JobResource:
    """The job as clients see it; a queued one with its place in the queue and rough wait,
    read here unless `place` (`JobStore.place_async`'s answer) is given."""
    position = eta_s = None
    if job.status == JobStatus.queued:
        position, mean_s = place or await svc.store.place_async(job.id)
        eta_s = queued_eta_s(svc, position, mean_s, await svc.engine_view.beats_async())
    return job_resource(
        job, settings=svc.settings, storage=svc.storage, queue_position=position, eta_s=eta_s
    )


async def _submit(
    svc: Svc,
    owner: str,
    body: JobRequest,
    wait_s: float | None,
    response: Response,
    idempotency_key: str | None = None,
) -> JobResource:
    since = svc.ends.mark() if wait_s else None
    accepted = await accept(svc, owner, body, idempotency_key=idempotency_key)
    job, place = accepted.job, accepted.place
    if not accepted.new:
        response.headers["Idempotent-Replayed"] = "true"
    if wait_s:
        response.headers["Preference-Applied"] = f"wait={wait_s:g}"
        job, place = await wait_for_end(svc, job, wait_s, since), None
    response.status_code = 200 if job.status.terminal else 202
    response.headers["Location"] = f"{svc.settings.base_url}/v1/jobs/{job.id}"
    try:
        return await _resource(svc, job, place)
    except OUTAGE:
        return job_resource(job, settings=svc.settings, storage=svc.storage, queue_position=None)


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobResource,
    responses=ERROR_RESPONSES,
    summary="Submit a synthesis job",
)
async def create_job(
    body: JobRequest,
    svc: Svc,
    owner: Owner,
    response: Response,
    prefer: Annotated[
        str | None,
        Header(
            description="`wait=N` (N ≤ 60) holds the answer until the job ends or N seconds pass"
        ),
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobResource:
    wait_s = _prefer_wait(prefer, svc.settings.max_wait_s)
    return await _submit(svc, owner, body, wait_s, response, idempotency_key)


@router.get(
    "/v1/jobs", response_model=JobList, responses=ERROR_RESPONSES, summary="List jobs, newest first"
)
async def list_jobs(
    svc: Svc,
    owner: Owner,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            max_length=64,
            description="`next_cursor` of the previous page",
        ),
    ] = None,
) -> JobList:
    after = None
    if cursor:
        score, _, job_id = cursor.partition("_")
        after = (float(score), job_id)
    jobs, last = await run_in_threadpool(
        svc.store.list_owned, owner, status=status, after=after, limit=limit
    )
    data = [await _resource(svc, job) for job in jobs]
    return JobList(data=data, next_cursor=f"{last[0]!r}_{last[1]}" if last else None)


@router.get(
    "/v1/jobs/{job_id}", response_model=JobResource, responses=ERROR_RESPONSES, summary="Read a job"
)
async def get_job(job_id: JobIdParam, svc: Svc, owner: Owner) -> JobResource:
    return await _resource(svc, await svc.store.get_owned_async(job_id, owner))


@router.post(
    "/v1/jobs/{job_id}/cancel",
    response_model=JobResource,
    responses=ERROR_RESPONSES,
    summary="Cancel a queued or running job",
)
async def cancel_job(job_id: JobIdParam, svc: Svc, owner: Owner) -> JobResource:
    job = await run_in_threadpool(svc.store.cancel, job_id, owner)
    return await _resource(svc, job)


@router.get(
    "/v1/jobs/{job_id}/audio",
    status_code=307,
    response_class=RedirectResponse,
    responses={**ERROR_RESPONSES, 307: {"description": "Redirect to the audio's (presigned) URL"}},
    summary="Redirect to the job's audio",
)
async def job_audio(job_id: JobIdParam, svc: Svc, owner: Owner) -> RedirectResponse:
    job = await svc.store.get_owned_async(job_id, owner)
    if job.status != JobStatus.succeeded or job.audio is None:
        raise Conflict(f"job {job_id} has no audio (status {job.status})", code="audio_not_ready")
    return RedirectResponse(svc.storage.url(job.audio.key, svc.settings.url_ttl_s), 307)
