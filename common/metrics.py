"""Job metrics: recorded where a job's status changes, kept in Redis, read by `/metrics`.

The API and the workers are separate processes, often on separate machines, so a worker's
in-process Prometheus counters would never reach the API. Instead each figure is a Redis hash
the job store adds to inside the transaction that already changes the job (`pipe` below is
that transaction's MULTI): the GPU worker pays a few more commands in a round trip it makes
anyway, never an extra one. The API's collector (`api/metrics.py`) turns the hashes into
Prometheus families when it is scraped.

Layout (`keys.metric(name)`): a counter is a hash of label values (joined by `LABEL_SEP`) to a
running total; a histogram is a hash of bucket index to the number of observations that fell
in that bucket alone (the collector accumulates them), plus `sum`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime

from redis.client import Pipeline

from common import keys
from common.schemas.jobs import JobRecord

LABEL_SEP = "|"
SUM = "sum"
#: Seconds, from a warm engine's shortest line to a long chapter.
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Real-time factor (engine seconds per second of audio): below 1 is faster than speech.
RATIOS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = SECONDS


@dataclass(frozen=True)
class Counter:
    name: str
    help: str
    labels: tuple[str, ...] = ()


QUEUE_WAIT = Histogram("queue_wait_seconds", "Acceptance to the first start of synthesis.")
SYNTHESIS = Histogram("synthesis_seconds", "Engine time of each synthesis that made audio.")
UPLOAD = Histogram(
    "upload_seconds", "Hand-off to the audio in storage: post-processing and upload."
)
END_TO_END = Histogram("end_to_end_seconds", "Acceptance to succeeded.")
REAL_TIME_FACTOR = Histogram(
    "real_time_factor", "Engine seconds per second of audio, per synthesis.", RATIOS
)
JOBS_ENDED = Counter("jobs_ended", "Jobs by final status and error code.", ("status", "code"))
AUDIO_SECONDS = Counter("audio_seconds", "Seconds of audio delivered by succeeded jobs.")
GPU_BUSY = Counter("gpu_busy_seconds", "Engine seconds spent on syntheses that made audio.")
WEBHOOK_ATTEMPTS = Counter(
    "webhook_deliveries", "Webhook delivery attempts by outcome.", ("outcome",)
)

HISTOGRAMS = (QUEUE_WAIT, SYNTHESIS, UPLOAD, END_TO_END, REAL_TIME_FACTOR)
COUNTERS = (JOBS_ENDED, AUDIO_SECONDS, GPU_BUSY, WEBHOOK_ATTEMPTS)


def observe(pipe: Pipeline, histogram: Histogram, value: float) -> None:
    key = keys.metric(histogram.name)
    # Index len(buckets) is +Inf; `le` is inclusive, hence bisect_left.
    pipe.hincrby(key, str(bisect_left(histogram.buckets, value)), 1)
    pipe.hincrbyfloat(key, SUM, value)


def add(pipe: Pipeline, counter: Counter, amount: float = 1.0, *labels: str) -> None:
    pipe.hincrbyfloat(keys.metric(counter.name), LABEL_SEP.join(labels), amount)


# -- what each transition records (called by common/jobs/store.py inside its MULTI) -------------


def on_claim(pipe: Pipeline, job: JobRecord) -> None:
    # The first start only: a retried job's second wait would count its first run as waiting.
    if job.attempts == 1 and job.metrics.queue_s is not None:
        observe(pipe, QUEUE_WAIT, job.metrics.queue_s)


def on_synthesized(pipe: Pipeline, synth_s: float, duration_s: float) -> None:
    observe(pipe, SYNTHESIS, synth_s)
    add(pipe, GPU_BUSY, synth_s)
    if duration_s > 0:
        observe(pipe, REAL_TIME_FACTOR, synth_s / duration_s)


def on_succeeded(pipe: Pipeline, job: JobRecord, now: datetime) -> None:
    if job.stage_at is not None:
        observe(pipe, UPLOAD, (now - job.stage_at).total_seconds())
    observe(pipe, END_TO_END, (now - job.created_at).total_seconds())
    if job.audio is not None:
        add(pipe, AUDIO_SECONDS, job.audio.duration_s)


def on_end(pipe: Pipeline, job: JobRecord) -> None:
    add(pipe, JOBS_ENDED, 1.0, str(job.status), job.error.code if job.error else "")
