"""GPU busy fraction with storage 300 ms away: target >= 0.99 (issue 14, target 1).

    .venv/bin/python -m bench.gpu_busy [--jobs 200] [--engine-s 0.3] [--storage-delay-s 0.3]

A real stack (Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server) whose S3 traffic goes
through `DelayProxy` (every upstream chunk held `--storage-delay-s`). The engine is the test
suite's `ScriptedEngine` told to sleep `--engine-s` per job (a GPU engine busy without holding
a CPU core). Two rounds: WAV, then MP3 at 48 kHz normalised and fitted (post-processing on
the I/O worker) with a webhook per job to a receiver on loopback. All jobs are submitted at
once; busy fraction = the seconds the engine ran (as it recorded them) over the span from the
first synthesis's start to the last one's end (`postprocess_offpath.one_round`). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.delay_proxy import DelayProxy
from bench.postprocess_offpath import ROUNDS, one_round
from bench.stack import bench_stack
from tests.support.servers import S3Server

TARGET = 0.99


class Hooks(ThreadingHTTPServer):
    """A webhook receiver on loopback that takes every delivery (200) and counts them."""

    def __init__(self) -> None:
        self.count = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                hooks.count += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--engine-s", type=float, default=0.3)
    parser.add_argument("--storage-delay-s", type=float, default=0.3)
    args = parser.parse_args()
    hooks = Hooks()
    rounds = {
        "wav": ROUNDS["wav"],
        "mp3_with_webhooks": {**ROUNDS["mp3"], "webhook_url": hooks.url},
    }

    def through_proxy(s3: S3Server) -> dict[str, str]:
        proxy = DelayProxy(s3.port, args.storage_delay_s).start()
        return {"TTS_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}

    try:
        with bench_stack(
            s3_settings=through_proxy,
            TTS_FETCH_ALLOW_CIDRS="127.0.0.0/8",  # the webhook receiver is on loopback
        ) as stack:
            one_round(stack, ROUNDS["wav"], 4, 0)  # warm both workers
            results = {
                name: one_round(stack, body, args.jobs, args.engine_s)
                for name, body in rounds.items()
            }
            time.sleep(3)  # the last deliveries
    finally:
        hooks.shutdown()
    worst = min(r["busy_fraction"] for r in results.values())
    print(
        json.dumps(
            {
                **results,
                "webhooks_received": hooks.count,
                "engine_s": args.engine_s,
                "storage_delay_s": args.storage_delay_s,
                "target": f"busy_fraction >= {TARGET} in every round",
                "met": worst >= TARGET,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
