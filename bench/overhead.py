"""Per-job overhead, one job at a time: end-to-end latency / engine time, target <= 1.05 at
the median and <= 1.15 at p99 with a 0.3 s engine (issue 14, target 2).

    .venv/bin/python -m bench.overhead [--jobs 60] [--engine-s 0.3]

A real stack (Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server, on loopback). Each job
is one `POST /v1/jobs` with `Prefer: wait=60` on a kept-alive connection (how the drop-in
`/synthesize` and a waiting client see it); its latency (request sent to `200` with the
succeeded job) is divided by its `metrics.synth_s`, the engine's own time. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.engine_vs_queue import pct
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import Stack

MEDIAN, P99 = 1.05, 1.15


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--engine-s", type=float, default=0.3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ttsq-bench-"))
    redis = RedisServer(tmp / "redis").start()
    s3 = S3Server().start()
    stack = Stack(tmp, redis, s3, TTS_BACKEND="tests.support.engines:ScriptedEngine").start()
    ratios, latencies = [], []
    http = httpx.Client(
        base_url=stack.url, headers={**stack.headers(), "Prefer": "wait=60"}, timeout=90
    )
    try:
        for i in range(args.jobs + 2):
            body = {"text": f"Line {i}.", "metadata": {"script": f"sleep:{args.engine_s}"}}
            started = time.perf_counter()
            answer = http.post("/v1/jobs", json=body)
            latency = time.perf_counter() - started
            done = answer.json()
            if answer.status_code != 200 or done["status"] != "succeeded":
                raise SystemExit(f"job did not succeed in the wait: {answer.status_code} {done}")
            if i < 2:
                continue  # warm-up
            latencies.append(latency)
            ratios.append(latencies[-1] / float(done["metrics"]["synth_s"]))
    finally:
        http.close()
        stack.stop()
        s3.stop()
        redis.stop()
    median, p99 = statistics.median(ratios), pct(ratios, 0.99)
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "engine_s": args.engine_s,
                "latency_s_median": round(statistics.median(latencies), 4),
                "ratio_median": round(median, 4),
                "ratio_p99": round(p99, 4),
                "target": f"median <= {MEDIAN}, p99 <= {P99}",
                "met": median <= MEDIAN and p99 <= P99,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
