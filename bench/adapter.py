"""The IndexTTS2 adapter's own time per job: `IndexTTS2Engine.synthesize` less upstream's `infer`.

    .venv/bin/python -m bench.adapter [--jobs 200]

On the test suite's stand-in for upstream (tests/fake_indextts), in this process: each job's
time in the adapter is its `synthesize` call less the time inside the model's `infer` (voice
lookup, argument mapping, warning capture, conversion to PCM16). The stand-in's own work (it
speaks with eSpeak) is inside `infer`, so it does not count here; through the whole queue it
does count as engine time, which is why bench/overhead.py runs the scripted engine instead.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engine_vs_queue import pct

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests" / "fake_indextts"))
    from common.schemas.job_request import JobRequest
    from common.settings import Settings
    from gpu_worker.engines.indextts import IndexTTS2Engine
    from tests.test_indextts_engine import make_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="ttsq-adapter-"))
    model_dir = make_model_dir(tmp / "model", IndexTTS2Engine)
    engine = IndexTTS2Engine(
        Settings(indextts_model_dir=model_dir, data_dir=tmp / "data", indextts_use_fp16=False)
    )
    engine.warmup()
    infer, inside = engine.model.infer, [0.0]

    def timed(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return infer(*a, **k)
        finally:
            inside[0] += time.perf_counter() - start

    engine.model.infer = timed
    request = JobRequest(text="Please keep your seatbelt fastened while the sign is on.")
    own_ms = []
    for _ in range(args.jobs):
        inside[0] = 0.0
        start = time.perf_counter()
        engine.synthesize(request)
        own_ms.append((time.perf_counter() - start - inside[0]) * 1000)
    print(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}",
                "jobs": args.jobs,
                "adapter_ms_median": round(statistics.median(own_ms), 3),
                "adapter_ms_p95": round(pct(own_ms, 0.95), 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
