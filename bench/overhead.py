"""Per-job overhead, one job at a time: end-to-end latency / engine time, target <= 1.05 at
the median and <= 1.15 at p99 with a 0.3 s engine (issue 14, target 2).

    .venv/bin/python -m bench.overhead [--jobs 60] [--engine-s 0.3]

A real stack (Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server, on loopback). Each job
is one `POST /v1/jobs` with `Prefer: wait=60` on a kept-alive connection (how the drop-in
`/synthesize` and a waiting client see it); its latency (request sent to `200` with the
succeeded job) is divided by its `metrics.synth_s`, the engine's own time. Prints JSON, with
the median of each stage between the request and the answer (from the job's own timestamps,
and the engine's start and end as `ScriptedEngine` records them), so the overhead left is
visible by where it is spent. `--storage local` runs the stack on local-disk storage (what
`make run` uses) instead of the S3 server.

Beside it, the storage's own time: the same storage client `PUT`s an object of the jobs' size
from this process, one at a time (`storage_put_ms_median`). The ratio less that time
(`ratio_median_less_put`) is the overhead that is ttsq's own; the target is the plain ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import redis as redis_client

from bench.engine_vs_queue import pct
from bench.stack import bench_stack
from common import keys
from common.settings import Settings
from common.storage import audio_key, make_storage

MEDIAN, P99 = 1.05, 1.15


def stages(
    sent: float, answered: float, record: dict[str, Any], engine: list[float]
) -> dict[str, float]:
    """Seconds spent in each stage of one job, in order; they add up to its latency."""

    def at(field: str) -> float:
        return datetime.fromisoformat(record[field]).timestamp()

    marks = [
        ("request_to_stored", at("created_at")),
        ("stored_to_claimed", at("started_at")),  # the broker's delivery, the claim
        ("claimed_to_engine", engine[0]),
        ("engine", engine[1]),
        ("engine_to_handed_off", at("stage_at")),  # WAV, hand-off, upload message
        ("handed_off_to_stored", at("finished_at")),  # delivery, post-processing, storage
        ("ended_to_answer", answered),  # the wait's wake-up, the answer, the client
    ]
    out, last = {}, sent
    for name, mark in marks:
        out[name], last = mark - last, mark
    return out


def storage_put_s(env: dict[str, str], size: int, n: int = 50) -> float:
    """Median seconds of one `Storage.put` of `size` bytes with the stack's storage settings."""
    fields = {k.removeprefix("TTS_").lower(): v for k, v in env.items() if k.startswith("TTS_")}
    settings = Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})
    storage = make_storage(settings)
    data, spent = os.urandom(size), []
    for _ in range(n + 5):
        started = time.perf_counter()
        storage.put(audio_key(uuid.uuid4().hex, "wav"), data, "audio/wav")
        spent.append(time.perf_counter() - started)
    return statistics.median(spent[5:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--engine-s", type=float, default=0.3)
    parser.add_argument("--storage", choices=["s3", "local"], default="s3")
    args = parser.parse_args()
    ratios: list[float] = []
    latencies: list[float] = []
    spent: list[dict[str, float]] = []
    sizes: list[int] = []
    with (
        bench_stack(storage=args.storage) as stack,
        httpx.Client(
            base_url=stack.url, headers={**stack.headers(), "Prefer": "wait=60"}, timeout=90
        ) as http,
    ):
        records = redis_client.Redis.from_url(stack.redis.url)
        for i in range(args.jobs + 2):
            body = {"text": f"Line {i}.", "metadata": {"script": f"sleep:{args.engine_s}"}}
            sent, started = time.time(), time.perf_counter()
            answer = http.post("/v1/jobs", json=body)
            latency = time.perf_counter() - started
            answered = time.time()
            done = answer.json()
            if answer.status_code != 200 or done["status"] != "succeeded":
                raise SystemExit(f"job did not succeed in the wait: {answer.status_code} {done}")
            if i < 2:
                continue  # warm-up
            latencies.append(latency)
            sizes.append(int(done["audio"]["size_bytes"]))
            ratios.append(latencies[-1] / float(done["metrics"]["synth_s"]))
            record = json.loads(records.get(keys.job(done["id"])) or b"{}")
            spans = (stack.ledger / "engine-spans").read_text().splitlines()
            engine = [float(x) for x in spans[-1].split()]  # one job at a time: the last
            spent.append(stages(sent, answered, record, engine))
        put_s = storage_put_s(stack.env, int(statistics.median(sizes)))
    median, p99 = statistics.median(ratios), pct(ratios, 0.99)
    engine_s = statistics.median(s["engine"] for s in spent)
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "engine_s": args.engine_s,
                "storage": args.storage,
                "latency_s_median": round(statistics.median(latencies), 4),
                "ratio_median": round(median, 4),
                "ratio_p99": round(p99, 4),
                "storage_put_ms_median": round(put_s * 1000, 1),
                "ratio_median_less_put": round(median - put_s / engine_s, 4),
                "stage_ms_median": {
                    name: round(statistics.median(s[name] for s in spent) * 1000, 1)
                    for name in spent[0]
                },
                "target": f"median <= {MEDIAN}, p99 <= {P99}",
                "met": median <= MEDIAN and p99 <= P99,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
