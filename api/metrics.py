"""The Prometheus collector behind `/metrics`: everything is read from Redis at scrape time.

Job counters and histograms are the hashes the job store keeps (`common/metrics.py`); queue
depths are the broker's own lists; the per-worker gauges come from the workers' heartbeats. So
one API process shows the figures of every worker on every machine, and several API processes
all show the same figures (scrape any one of them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from common import keys, metrics
from common.worker.registry import alive_workers, held

PREFIX = "ttsq_"
#: The Celery queues whose waiting messages are counted, per priority step.
QUEUES = (keys.SYNTH_QUEUE, keys.IO_QUEUE, keys.WEBHOOK_QUEUE)


class TtsqCollector(Collector):
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def collect(self) -> Iterator[Metric]:
        pipe = self.redis.pipeline(transaction=False)
        for family in (*metrics.HISTOGRAMS, *metrics.COUNTERS):
            pipe.hgetall(keys.metric(family.name))
        lists = [(q, step, name) for q in QUEUES for step, name in _priority_lists(q)]
        for _, _, name in lists:
            pipe.llen(name)
        pipe.zcard(keys.QUEUED)
        pipe.zcard(keys.RUNNING)
        pipe.zcard(keys.WEBHOOKS_DUE)
        replies: list[Any] = pipe.execute()
        hashes = [_decoded(r) for r in replies[: len(metrics.HISTOGRAMS) + len(metrics.COUNTERS)]]
        rest = replies[len(hashes) :]
        for histogram, data in zip(metrics.HISTOGRAMS, hashes, strict=False):
            yield _histogram(histogram, data)
        for counter, data in zip(metrics.COUNTERS, hashes[len(metrics.HISTOGRAMS) :], strict=True):
            yield _counter(counter, data)
        depth = GaugeMetricFamily(
            PREFIX + "queue_depth",
            "Messages waiting in each Celery queue, by priority step.",
            labels=["queue", "priority"],
        )
        for (queue, step, _), length in zip(lists, rest, strict=False):
            depth.add_metric([queue, str(step)], float(length))
        yield depth
        queued, running, webhooks = rest[len(lists) :]
        yield GaugeMetricFamily(PREFIX + "jobs_queued", "Jobs accepted and waiting.", queued)
        yield GaugeMetricFamily(
            PREFIX + "jobs_running", "Jobs a worker holds (synthesising or uploading).", running
        )
        yield GaugeMetricFamily(
            PREFIX + "webhooks_pending", "Webhook deliveries waiting for an attempt.", webhooks
        )
        yield from _workers(self.redis)


def registry(client: redis.Redis) -> CollectorRegistry:
    # A registry of its own: the default one would add the API process's own gauges, which
    # say nothing about the service and differ between API replicas.
    reg = CollectorRegistry(auto_describe=False)
    reg.register(TtsqCollector(client))
    return reg


def _priority_lists(queue: str) -> list[tuple[int, str]]:
    return list(zip(keys.BROKER_PRIORITY_STEPS, keys.broker_queue_lists(queue), strict=True))


def _decoded(raw: Any) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in cast(dict[bytes, bytes], raw).items()}


def _histogram(histogram: metrics.Histogram, data: dict[str, float]) -> HistogramMetricFamily:
    running, buckets = 0.0, []
    for i, bound in enumerate((*histogram.buckets, float("inf"))):
        running += data.get(str(i), 0.0)
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    family = HistogramMetricFamily(PREFIX + histogram.name, histogram.help)
    family.add_metric([], buckets, data.get(metrics.SUM, 0.0))
    return family


def _counter(counter: metrics.Counter, data: dict[str, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + counter.name, counter.help, labels=counter.labels)
    if not counter.labels:
        family.add_metric([], data.get("", 0.0))
        return family
    for joined, value in sorted(data.items()):
        family.add_metric(joined.split(metrics.LABEL_SEP), value)
    return family


def _workers(client: redis.Redis) -> Iterator[Metric]:
    labels = ["instance", "kind", "engine"]
    ready = GaugeMetricFamily(
        PREFIX + "worker_ready", "1 when a live worker is ready (engine loaded).", labels=labels
    )
    busy = GaugeMetricFamily(
        PREFIX + "worker_busy", "1 while a live worker holds a job.", labels=labels
    )
    done = GaugeMetricFamily(
        PREFIX + "worker_jobs_done", "Jobs a live worker process has run.", labels=labels
    )
    memory = GaugeMetricFamily(
        PREFIX + "worker_gpu_memory_bytes", "GPU memory the engine holds.", labels=labels
    )
    for beat in alive_workers(client):
        values = [beat.instance, beat.kind, beat.engine or ""]
        ready.add_metric(values, float(beat.ready))
        busy.add_metric(values, float(bool(held(beat))))
        done.add_metric(values, float(beat.jobs_done))
        if beat.gpu_memory_mb is not None:
            memory.add_metric(values, beat.gpu_memory_mb * 1024 * 1024)
    yield from (ready, busy, done, memory)
