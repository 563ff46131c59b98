"""`io_worker/merge.py`: a drop-in batch's merged track, made by the I/O worker from its
segments' stored audio, on a real Redis and local-disk storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from common import keys
from common.audio import codec as audio
from common.jobs.store import JobStore, new_job_id
from common.schemas.dropin import TrackMerge
from common.schemas.job_request import JobRequest
from common.schemas.jobs import AudioInfo, JobStatus
from common.storage import LocalStorage, audio_key
from io_worker.merge import run_merge

RATE = 22050


def _segment(store: JobStore, storage: LocalStorage, seconds: float) -> str:
    samples = np.full(round(seconds * RATE), 0.1, dtype=np.float32)
    data = audio.encode(samples, RATE, "wav")
    job_id = new_job_id()
    key = audio_key(job_id, "wav")
    storage.put(key, data, "audio/wav")
    info = AudioInfo(
        key=key,
        format="wav",
        sample_rate=RATE,
        duration_s=seconds,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return store.add_finished(job_id, "o", JobRequest(text=f"{seconds} s"), info).id


def test_the_merged_track_is_its_segments_end_to_end_once_however_often_asked(
    store: JobStore, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path, base_url="http://127.0.0.1:1", signing_key=b"k" * 32)
    parts = [_segment(store, storage, s) for s in (0.5, 1.25, 0.75)]
    merged_id = new_job_id()
    asked = TrackMerge(owner="o", job_ids=parts)
    store.redis.set(keys.track_merge(merged_id), asked.model_dump_json())

    run_merge(merged_id, client=store.redis, store=store, storage=storage)
    merged = store.get(merged_id)
    assert merged is not None and merged.status == JobStatus.succeeded and merged.audio
    samples, rate = audio.decode(storage.get(merged.audio.key))
    assert rate == RATE and samples.shape[0] == round(2.5 * RATE)
    assert merged.request.metadata["merged_jobs"] == ",".join(parts)
    assert store.redis.get(keys.track_merge(merged_id)) is None

    # Delivered again (a redelivery, a retried task): nothing is made twice.
    store.redis.set(keys.track_merge(merged_id), asked.model_dump_json())
    run_merge(merged_id, client=store.redis, store=store, storage=storage)
    again = store.get(merged_id)
    assert again is not None and again.audio == merged.audio
    assert again.finished_at == merged.finished_at
