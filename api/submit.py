"""Accepting a job, shared by ttsq's own routes and the drop-in `/synthesize`.

Checks come first (text, what the running engine supports); an error up to there answers
4xx/5xx with nothing stored. Once the job is stored it is accepted, whatever happens next: an
outage while publishing leaves it in the outbox for the sweeper, and an outage while waiting
ends the wait, never the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial

import redis
from kombu.exceptions import KombuError
from starlette.concurrency import run_in_threadpool

from api.deps import Services
from api.ends import Mark
from api.reuse import answer_from_cache, cached, key_for
from api.text import check_text
from api.url_guard import check_webhook_url
from api.voice_upload import check_voices
from common.broker import job_message, publish_job
from common.jobs.idempotency import create_job_once
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord
from common.schemas.voices import is_uploaded_voice

log = logging.getLogger(__name__)
#: What a Redis or broker outage raises; after the job is stored these never reach the client.
OUTAGE = (redis.RedisError, KombuError, OSError)


async def check(svc: Services, owner: str, body: JobRequest) -> None:
    """Refuse a request that cannot run (4xx/5xx), storing nothing."""
    check_text(body.text, max_chars=svc.settings.max_text_chars)
    await run_in_threadpool(_check, svc, owner, body)


def _check(svc: Services, owner: str, body: JobRequest) -> None:
    svc.engine_view.check(body)
    check_voices(svc.voices, owner, body)
    if body.webhook_url is not None:
        check_webhook_url(svc.settings, body.webhook_url)


@dataclass
class Accepted:
    job: JobRecord
    #: False when an earlier request's job answers this one (`request_key`, `idempotency_key`).
    new: bool
    #: The job's place as stored (`JobStore.create_placed`), when it was read with it: its
    #: `queue_position` and the recent syntheses' mean engine seconds.
    place: tuple[int | None, float | None] | None = None


async def accept(
    svc: Services,
    owner: str,
    body: JobRequest,
    *,
    request_key: str | None = None,
    idempotency_key: str | None = None,
) -> Accepted:
    """Store and publish a job; with `request_key`, join an earlier identical request's job
    instead when it is queued, running or succeeded; with `idempotency_key`, answer with the
    job that key made for this body (422 for another body).

    The common request (neither key, no uploaded voice, no webhook) is accepted on the event
    loop in one Redis round trip (`_accept_on_loop`). The rest is blocking Redis, DNS and
    broker I/O, done in one thread-pool hop."""
    check_text(body.text, max_chars=svc.settings.max_text_chars)
    if request_key is None and idempotency_key is None and not _blocking_checks(body):
        return await _accept_on_loop(svc, owner, body)
    job, new = await run_in_threadpool(_accept, svc, owner, body, request_key, idempotency_key)
    return Accepted(job, new)


def _blocking_checks(body: JobRequest) -> bool:
    """Whether accepting the job reads a voice record or resolves a webhook's host."""
    emotion = body.emotion.audio if body.emotion is not None else None
    uploaded = is_uploaded_voice(body.voice) or is_uploaded_voice(emotion)
    return uploaded or body.webhook_url is not None


async def _accept_on_loop(svc: Services, owner: str, body: JobRequest) -> Accepted:
    """`_accept` for a request `_blocking_checks` passes, with no thread: one transaction
    stores the job, sends its message unless the result cache holds its key, and reads its
    place. A hit is stored unpublished, then ended with a copy of the earlier audio by
    `_publish` (storage I/O, in the thread pool)."""
    beats = await svc.engine_view.beats_async()
    svc.engine_view.check(body, beats)
    key = key_for(svc, owner, body, beats)
    message = partial(job_message, svc.celery)
    placed = await svc.store.create_placed(owner, body, message=message, cache_key=key)
    if placed.cached:
        return Accepted(await publish(svc, placed.job), True)
    return Accepted(placed.job, True, (placed.position, placed.mean_s))


def _accept(
    svc: Services,
    owner: str,
    body: JobRequest,
    request_key: str | None,
    idempotency_key: str | None,
) -> tuple[JobRecord, bool]:
    _check(svc, owner, body)
    # A new job is stored with its message, one transaction (`JobStore.add_job`); with the cache
    # on, one read first, and a hit is stored unpublished and ended with a copy of the earlier
    # audio by `_publish`, which sends nothing.
    key = key_for(svc, owner, body)
    hit = cached(svc, key)
    message = None if hit else partial(job_message, svc.celery)
    key = None if hit else key
    store = svc.store
    if idempotency_key is not None:
        job, new = create_job_once(
            store, owner, body, idempotency_key, message=message, cache_key=key
        )
    elif request_key is None:
        job, new = store.create(owner, body, message=message, cache_key=key), True
    else:
        job, new = store.create_once(owner, body, request_key, message=message, cache_key=key)
    if new and hit:
        job = _publish(svc, job)
    return job, new


async def publish(svc: Services, job: JobRecord) -> JobRecord:
    return await run_in_threadpool(_publish, svc, job)


def _publish(svc: Services, job: JobRecord) -> JobRecord:
    """Send the job's message, unless the result cache answers it (then the job returned has
    ended, with a copy of the audio). On an outage the job stays in the outbox
    (`UNPUBLISHED`), which the sweeper publishes: the job is accepted either way, so the
    client gets its answer."""
    try:
        cached = answer_from_cache(svc, job)
        if cached is not None:
            return cached
        publish_job(svc.celery, job)
        svc.store.mark_published(job.id)
    except OUTAGE as exc:
        log.warning(
            "[job %s] stored but not published (%s): the sweeper will publish it",
            job.id,
            type(exc).__name__,
        )
    return job


async def wait_for_end(
    svc: Services, job: JobRecord, wait_s: float, since: Mark | None = None
) -> JobRecord:
    """Wait until the job ends or `wait_s` passes. No thread is held and Redis is not polled
    while waiting: the end is announced with the ended record (`api/ends.py`), and the record
    is read only when the subscription could not bring it, or once at the start unless `since`
    (`EndWatcher.mark`, taken before `job` was read or stored) shows every end since was
    heard. A server shutting down ends every wait at once (`EndWatcher.stop_waiting`): the
    job stays queued and a retry joins it."""
    deadline = time.monotonic() + wait_s
    with svc.ends.watch(job.id, since) as maybe_ended:
        while not job.status.terminal and not svc.ends.stopping:
            try:
                await asyncio.wait_for(maybe_ended.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
            maybe_ended.clear()
            record, maybe_ended.record = maybe_ended.record, None
            if record is not None:  # the same id, so the same owner
                job = JobRecord.model_validate_json(record)
                continue
            try:
                job = await svc.store.get_owned_async(job.id, job.owner)
            except OUTAGE as exc:
                log.warning("[job %s] wait ended early: %s", job.id, type(exc).__name__)
                break
    return job
