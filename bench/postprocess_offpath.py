"""Post-processing stays off the synthesis worker's path: its busy fraction with MP3 on is no
lower than with WAV.

    .venv/bin/python -m bench.postprocess_offpath                 # eSpeak + 0.25 s per job
    TTS_BACKEND=index_tts2 INDEXTTS_MODEL_DIR=... .venv/bin/python -m bench.postprocess_offpath \
        --engine-s 0                                              # on a GPU machine

A real stack (Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server, on loopback, started by
the test suite's harness). Each round submits all its jobs at once, so the synthesis worker
always has the next one waiting, and waits for them all. Busy fraction: the seconds the engine
spent over the span from the first synthesis's start to the last one's end, as the engine
itself recorded them (`ScriptedEngine`'s `engine-spans`; with another engine, from each job's
`metrics.synth_s` and the span of the jobs' `started_at`/`finished_at`, a lower bound).
The default engine is eSpeak (the test suite's `ScriptedEngine`) told to wait
`--engine-s` seconds per job as well: it stands in for a GPU engine, busy for a while without
holding a CPU core (eSpeak alone takes a few milliseconds, so the span would measure Celery's
per-job overhead, not the engine). Rounds: plain WAV at the engine's rate, then MP3 at 48 kHz
normalised to -23 LUFS and fitted to a target duration (resampling, Rubber Band, loudness and
LAME: the heaviest post-processing there is), then WAV again to show the drift between rounds.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime
from typing import Any

from bench.stack import SCRIPTED, bench_stack
from tests.support.stack import Stack

LINES = [
    "Please keep your seatbelt fastened while the sign is on.",
    "The results will be published at the end of the week.",
    "A dubbed line must fit the time slot of the line it replaces.",
    "We leave early tomorrow; the drive takes about two hours.",
]
ROUNDS: dict[str, dict[str, Any]] = {
    "wav": {"format": "wav"},
    "mp3": {"format": "mp3", "sample_rate": 48000, "loudness": -23, "target_duration_s": 2.4},
}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def one_round(stack: Stack, options: dict[str, Any], jobs: int, engine_s: float) -> dict[str, Any]:
    metadata = {"script": f"sleep:{engine_s}"} if engine_s else {}
    round_began = time.time()
    started = time.perf_counter()
    ids = [
        stack.submit(text=LINES[i % len(LINES)], metadata=metadata, **options)["id"]
        for i in range(jobs)
    ]
    done = [stack.wait_end(job_id, timeout=600) for job_id in ids]
    wall_s = time.perf_counter() - started
    failed = [d["id"] for d in done if d["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs did not succeed, e.g. {stack.get(failed[0])}")
    synth = [float(d["metrics"]["synth_s"]) for d in done]
    # The engine's own record of when it ran (`ScriptedEngine`): with the pipeline, a job is
    # claimed while the one before it is on the engine, so `started_at` is not the engine's start.
    recorded = stack.ledger / "engine-spans"
    if recorded.exists():
        spans = [
            (start, end)
            for start, end in (
                map(float, line.split()) for line in recorded.read_text().split("\n") if line
            )
            if start >= round_began
        ]
        engine_s = sum(end - start for start, end in spans)
        span_s = max(end for _, end in spans) - min(start for start, _ in spans)
    else:
        engine_s = sum(synth)
        span_s = (
            max(when(d["finished_at"]) for d in done) - min(when(d["started_at"]) for d in done)
        ).total_seconds()

    return {
        "jobs": jobs,
        "busy_fraction": round(engine_s / span_s, 4),
        "synth_s_median": round(statistics.median(synth), 4),
        "jobs_per_s": round(jobs / wall_s, 2),
        "audio": {k: done[0]["audio"][k] for k in ("format", "sample_rate", "duration_s")},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--engine-s", type=float, default=0.25, help="seconds added per job")
    args = parser.parse_args()
    backend = os.environ.get("TTS_BACKEND", SCRIPTED)
    with bench_stack(TTS_BACKEND=backend) as stack:
        one_round(stack, ROUNDS["wav"], 4, 0)  # warm both workers
        rounds = {
            name: one_round(stack, ROUNDS[name.removesuffix("_again")], args.jobs, args.engine_s)
            for name in ("wav", "mp3", "wav_again")
        }
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "engine": backend,
        "engine_s_added": args.engine_s,
        "mp3_options": ROUNDS["mp3"],
        "rounds": rounds,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
