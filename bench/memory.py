"""Resident memory after many jobs: each process's RSS after 10 000 jobs within 10% of its RSS
after 1 000 (issue 14).

    .venv/bin/python -m bench.memory [--jobs 10000] [--first 1000]

A real stack (Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server, on loopback) with the
test suite's `ScriptedEngine` and no script: eSpeak says a two-word line in a few milliseconds,
so the jobs are as short as the queue allows and the WAVs small. Jobs go in as `POST /v1/batches`
of up to 1 000 items, at most two batches in flight; at `--first` and at `--jobs` the stack is
let drain (every job submitted so far has ended), and then VmRSS is read from /proc for the API,
the synthesis worker's Celery parent and its prefork child, and the I/O worker. RSS is also read
after every batch (`series`, without draining). Redis's own memory grows with the job records
(they live for TTS_JOB_TTL_S) and is reported, not judged. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.stack import bench_stack
from tests.support.stack import TERMINAL, Stack

TARGET = 1.10
MAX_BATCH = 1000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return sorted(found)


def processes(stack: Stack) -> dict[str, int]:
    """The pids to watch, by name; the synthesis worker's prefork child is found anew each time
    (a recycled child has another pid)."""
    pids = {}
    for name, piece in (("api", stack.api), ("synth_parent", stack.worker), ("io", stack.io)):
        assert piece.proc is not None and piece.alive(), f"{name} is not running"
        pids[name] = piece.proc.pid
    kids = children(pids["synth_parent"])
    if len(kids) != 1:
        raise SystemExit(f"the synthesis worker has {len(kids)} children, expected 1: {kids}")
    pids["synth_child"] = kids[0]
    return {name: pids[name] for name in ("api", "synth_parent", "synth_child", "io")}


def snapshot(stack: Stack, ended: int, started: float) -> dict[str, Any]:
    pids = processes(stack)
    rss = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    rss["synth_total"] = round(rss["synth_parent"] + rss["synth_child"], 1)
    info = redis.Redis.from_url(stack.redis.url).info("memory")
    return {
        "jobs_ended": ended,
        "at_s": round(time.monotonic() - started, 1),
        "rss_mb": rss,
        "pids": pids,
        "redis_used_mb": round(int(info["used_memory"]) / 2**20, 1),
    }


def submit_batch(client: httpx.Client, start: int, size: int) -> tuple[str, str]:
    items = [{"ref": f"r{i}", "text": f"Job {i}."} for i in range(start, start + size)]
    r = client.post("/v1/batches", json={"items": items}, timeout=120)
    if r.status_code != 202:
        raise SystemExit(f"batch refused: {r.status_code} {r.text[:500]}")
    body = r.json()
    return body["id"], body["items"][-1]["job_id"]


def wait_batch(client: httpx.Client, batch: tuple[str, str], timeout: float = 1800) -> None:
    batch_id, last_job = batch
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/jobs/{last_job}").json()["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise SystemExit(f"batch {batch_id} did not end within {timeout} s")
        time.sleep(0.5)
    while True:
        counts = client.get(f"/v1/batches/{batch_id}", timeout=60).json()["counts"]
        if counts["queued"] == counts["running"] == 0:
            break
        time.sleep(0.5)
    if counts["succeeded"] != sum(counts.values()):
        raise SystemExit(f"batch {batch_id}: not every job succeeded: {counts}")


def run(stack: Stack, jobs: int, first: int, size: int) -> dict[str, Any]:
    client = httpx.Client(base_url=stack.url, headers=stack.headers(), timeout=30)
    started = time.monotonic()
    series, marks = [], {}
    submitted = ended = 0
    in_flight: list[tuple[tuple[str, str], int]] = []
    while ended < jobs:
        # Up to two batches in flight, but none past a mark until the stack has drained to it.
        mark = first if ended < first else jobs
        while len(in_flight) < 2 and submitted < mark:
            in_flight.append((submit_batch(client, submitted, size), size))
            submitted += size
        batch, n = in_flight.pop(0)
        wait_batch(client, batch)
        ended += n
        series.append(snapshot(stack, ended, started))
        if ended in (first, jobs):
            time.sleep(1)  # the last job's hand-off and log lines settle
            marks[ended] = snapshot(stack, ended, started)
    client.close()
    return {"marks": marks, "series": series, "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--first", type=int, default=1_000)
    args = parser.parse_args()
    size = min(MAX_BATCH, args.first)
    if args.first % size or args.jobs % size or not 0 < args.first < args.jobs:
        raise SystemExit(f"--first and --jobs must be multiples of {size}, first < jobs")
    with bench_stack() as stack:
        result = run(stack, args.jobs, args.first, size)
    at_first, at_end = result["marks"][args.first], result["marks"][args.jobs]
    ratios = {
        name: round(at_end["rss_mb"][name] / mb, 3) for name, mb in at_first["rss_mb"].items()
    }
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "first": args.first,
                "batch_size": size,
                "wall_s": round(result["wall_s"], 1),
                "jobs_per_s": round(args.jobs / result["wall_s"], 1),
                "rss_mb_first": at_first["rss_mb"],
                "rss_mb_end": at_end["rss_mb"],
                "ratio": ratios,
                "redis_used_mb": [at_first["redis_used_mb"], at_end["redis_used_mb"]],
                "child_pid_changed": at_first["pids"]["synth_child"]
                != at_end["pids"]["synth_child"],
                "target": f"every ratio <= {TARGET}",
                "met": all(r <= TARGET for r in ratios.values()),
                "series": [
                    {"jobs_ended": s["jobs_ended"], "at_s": s["at_s"], **s["rss_mb"]}
                    for s in result["series"]
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
