"""GPU busy fraction with storage 300 ms away: target >= 0.99 (issue 14, target 1).

    .venv/bin/python -m bench.gpu_busy [--jobs 200] [--engine-s 0.3] [--storage-delay-s 0.3]

A real stack (Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server) whose S3 traffic goes
through `DelayProxy` (every upstream chunk held `--storage-delay-s`). The engine is the test
suite's `ScriptedEngine` told to sleep `--engine-s` per job (a GPU engine busy without holding
a CPU core). All jobs are submitted at once; busy fraction = engine seconds (`metrics.synth_s`
summed) over the span from the first synthesis's start to the last one's end. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.delay_proxy import DelayProxy
from bench.postprocess_offpath import ROUNDS, one_round
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import Stack

TARGET = 0.99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--engine-s", type=float, default=0.3)
    parser.add_argument("--storage-delay-s", type=float, default=0.3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ttsq-bench-"))
    redis = RedisServer(tmp / "redis").start()
    s3 = S3Server().start()
    proxy = DelayProxy(s3.port, args.storage_delay_s).start()
    stack = Stack(
        tmp,
        redis,
        s3,
        TTS_BACKEND="tests.support.engines:ScriptedEngine",
        TTS_S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
    ).start()
    try:
        one_round(stack, ROUNDS["wav"], 4, 0)  # warm both workers
        result = one_round(stack, ROUNDS["wav"], args.jobs, args.engine_s)
    finally:
        stack.stop()
        s3.stop()
        redis.stop()
    result.update(
        engine_s=args.engine_s,
        storage_delay_s=args.storage_delay_s,
        target=f"busy_fraction >= {TARGET}",
        met=result["busy_fraction"] >= TARGET,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
