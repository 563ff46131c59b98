"""A submitted job answered from the result cache, before any message is sent."""

from __future__ import annotations

from api.deps import Services
from api.engine_check import Beats
from common.resultcache import ResultCache, cache_key
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord


def key_for(
    svc: Services, owner: str, request: JobRequest, beats: Beats | None = None
) -> str | None:
    """The result cache's key for a request; None with the cache off or nothing to key on.
    With `beats` (`EngineView.beats_async`) and no uploaded voice named, it reads no Redis."""
    if not svc.settings.result_cache:
        return None
    engine = svc.engine_view.engine_version(beats)
    return cache_key(owner, request, engine=engine, voices=svc.voices)


def cached(svc: Services, key: str | None) -> bool:
    return key is not None and ResultCache(svc.store.redis, svc.storage).lookup(key) is not None


def answer_from_cache(svc: Services, job: JobRecord) -> JobRecord | None:
    """The job ended with a copy of an identical earlier job's audio, or None: then it is to be
    synthesised, and carries its key so that its own audio answers the next one."""
    key = key_for(svc, job.owner, job.request)
    if key is None:
        return None
    job.cache_key = key
    served = ResultCache(svc.store.redis, svc.storage).serve(svc.store, job)
    if served is None:
        svc.store.set_cache_key(job.id, key)
    return served
