"""A submitted job answered from the result cache, before any message is sent."""

from __future__ import annotations

from api.deps import Services
from common.resultcache import ResultCache, cache_key
from common.schemas import JobRecord


def serve_from_cache(svc: Services, job: JobRecord) -> JobRecord | None:
    """The job ended with a copy of an identical earlier job's audio, or None: then it is to be
    synthesised, and carries its key so that its own audio answers the next one."""
    if not svc.settings.result_cache:
        return None
    engine = svc.engine_view.engine_version()
    key = cache_key(job.owner, job.request, engine=engine, voices=svc.voices)
    if key is None:
        return None
    job.cache_key = key
    served = ResultCache(svc.store.redis, svc.storage).serve(svc.store, job)
    if served is None:
        svc.store.set_cache_key(job.id, key)
    return served
