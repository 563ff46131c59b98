"""Direct engine calls against the same requests through the whole queue.

    .venv/bin/python -m bench.engine_vs_queue                    # eSpeak on the CPU
    TTS_BACKEND=index_tts2 INDEXTTS_MODEL_DIR=... .venv/bin/python -m bench.engine_vs_queue \
        --generation '{"num_beams": 1}'                          # on a GPU machine

Direct: the engine built in this process, `synthesize()` timed per request. Queue: a real stack
(Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server, all on loopback) started by the test
suite's harness; each request is submitted over HTTP and timed until the job is `succeeded`,
one at a time (latency: `Prefer: wait` on a kept-alive connection, so the answer comes when the
job ends, not at the next poll), then all at once (throughput, polled; with TTS_ENGINE_BATCH
above 1 the waiting jobs go through the engine together). Every TTS_ and INDEXTTS_ variable of
this environment reaches the stack. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Literal

import httpx

from bench.stack import bench_stack
from common.schemas.job_request import JobRequest
from common.settings import Settings
from gpu_worker.engines import load_engine

LINES = [
    "今天的会议改到下午三点。",
    "Please keep your seatbelt fastened while the sign is on.",
    "我们明天一早出发，路上大概需要两个小时。",
    "The results will be published at the end of the week.",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def direct(requests: list[JobRequest]) -> dict[str, Any]:
    engine = load_engine(Settings())
    engine.warmup()
    times, audio = [], 0.0
    for request in requests:
        started = time.perf_counter()
        out = engine.synthesize(request)
        times.append(time.perf_counter() - started)
        audio += out.duration_s
    return {
        "engine": engine.name,
        "device": engine.device,
        "jobs": len(times),
        "synth_s_median": statistics.median(times),
        "synth_s_p95": pct(times, 0.95),
        "audio_s": audio,
        "rtf": sum(times) / audio,
    }


def through_queue(requests: list[JobRequest], storage: Literal["s3", "local"]) -> dict[str, Any]:
    # The engine's settings from this environment (the stack's own start from a clean one).
    settings = {k: v for k, v in os.environ.items() if k.startswith(("TTS_", "INDEXTTS_"))}
    with (
        bench_stack(storage=storage, **{"TTS_BACKEND": "espeak", **settings}) as stack,
        httpx.Client(
            base_url=stack.url, headers={**stack.headers(), "Prefer": "wait=60"}, timeout=90
        ) as http,
    ):
        latency, overhead = [], []
        for request in requests:
            body = request.model_dump(exclude_none=True, exclude_defaults=True)
            started = time.perf_counter()
            answer = http.post("/v1/jobs", json=body)
            latency.append(time.perf_counter() - started)
            done = answer.json()
            if done.get("status") != "succeeded":
                raise SystemExit(f"job did not succeed in the wait: {answer.status_code} {done}")
            overhead.append(latency[-1] - done["metrics"]["synth_s"])
        started = time.perf_counter()
        ids = [
            stack.submit(**r.model_dump(exclude_none=True, exclude_defaults=True))["id"]
            for r in requests
        ]
        for job_id in ids:
            stack.wait_end(job_id, timeout=600)
        batch_s = time.perf_counter() - started
        return {
            "jobs": len(requests),
            "latency_s_median": statistics.median(latency),
            "latency_s_p95": pct(latency, 0.95),
            "overhead_s_median": statistics.median(overhead),
            "overhead_s_p95": pct(overhead, 0.95),
            "batch_jobs_per_s": len(ids) / batch_s,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--generation", default=None, help="JSON generation settings")
    parser.add_argument("--storage", choices=("s3", "local"), default="s3")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    generation = json.loads(args.generation) if args.generation else None
    requests = [
        JobRequest(text=LINES[i % len(LINES)], generation=generation) for i in range(args.jobs)
    ]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "engine_batch": int(os.environ.get("TTS_ENGINE_BATCH", "1")),
        "direct": direct(requests),
        "queue": through_queue(requests, args.storage),
    }
    print(json.dumps(result, indent=2))
    if args.json:  # an engine may print on stdout too (upstream IndexTTS2 does)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
