"""A drop-in batch's merged track: its segments' audio joined end to end, stored, and
recorded as a succeeded job of its own. CPU work on whole files, so it runs here, in the I/O
worker, never in the API process (`POST /synthesize/batch` with `merge` waits for it).

Safe to run twice: a track already recorded is left alone, and its object key derives from
its job id.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import redis

from common import keys
from common.audio import codec as audio
from common.jobs.store import JobStore
from common.schemas.dropin import TrackMerge
from common.schemas.job_request import JobRequest
from common.schemas.jobs import AudioInfo, JobRecord
from common.storage import CONTENT_TYPES, Storage, audio_key

log = logging.getLogger(__name__)


def run_merge(job_id: str, *, client: redis.Redis, store: JobStore, storage: Storage) -> None:
    raw = client.get(keys.track_merge(job_id))
    if raw is None or store.get(job_id) is not None:
        return  # asked long ago (the request gave up), or already made
    asked = TrackMerge.model_validate_json(raw)
    parts = [store.get(part) for part in asked.job_ids]
    merge_tracks(job_id, asked.owner, [p for p in parts if p is not None], store, storage)
    client.delete(keys.track_merge(job_id))


def merge_tracks(
    job_id: str, owner: str, jobs: list[JobRecord], store: JobStore, storage: Storage
) -> JobRecord:
    """Join the jobs' audio end to end into one stored track, itself a (finished) job."""
    tracks = [audio.decode(storage.get(job.audio.key)) for job in jobs if job.audio]
    rate = tracks[0][1]
    joined = np.concatenate([audio.to_mono(samples) for samples, _ in tracks])
    first = jobs[0].audio
    assert first is not None
    data = audio.encode(joined, rate, first.format)
    key = audio_key(job_id, first.format)
    storage.put(key, data, CONTENT_TYPES[first.format])
    info = AudioInfo(
        key=key,
        format=first.format,
        sample_rate=rate,
        duration_s=round(audio.duration_s(joined, rate), 4),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    texts = " ".join(job.request.text for job in jobs)
    merged = JobRequest(
        text=texts[:2000],
        format=first.format,
        metadata={"route": "synthesize/batch", "merged_jobs": ",".join(j.id for j in jobs)[:512]},
    )
    log.info("[job %s] merged %s segments", job_id, len(jobs), extra={"job_id": job_id})
    return store.add_finished(job_id, owner, merged, info)
