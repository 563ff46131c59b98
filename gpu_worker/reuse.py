"""The synthesis worker's look at the result cache, after resolving references and before
the engine runs: the one place a `voice_url` job's key can be known (it counts by the
fetched audio's content), and a second look for a job that missed at submission (an
identical job may have finished since, e.g. a line repeated within one batch)."""

from __future__ import annotations

from common.jobs.store import JobStore
from common.resultcache import ResultCache, cache_key
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobRecord
from common.voicestore import VoiceStore
from common.worker.joblog import job_log
from gpu_worker.engines.base import Engine


def serve_from_cache(
    results: ResultCache,
    store: JobStore,
    job: JobRecord,
    resolved: JobRequest,
    engine: Engine,
    instance: str,
) -> bool:
    """True when the job ended with a copy of cached audio (no engine call); else the job
    carries its key, so that its own audio answers the next identical one."""
    key = job.cache_key or cache_key(
        job.owner,
        job.request,
        engine=f"{engine.name}/{engine.model_version}",
        voices=VoiceStore(store.redis),
        fetched=resolved,
    )
    if key is None:
        return False
    if results.serve(store, job.model_copy(update={"cache_key": key}), instance=instance):
        job_log(__name__, job.id).info("served from the cache, no engine call")
        return True
    if job.cache_key is None:
        store.set_cache_key(job.id, key)
    return False
