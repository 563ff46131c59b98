"""A container health check: `python healthcheck.py api|synth|io|flower`, exit 0 when healthy.

api and flower: the HTTP port answers. synth and io: this container's worker has a live
heartbeat in Redis (a synthesis worker only once its engine is loaded and warm).
"""

from __future__ import annotations

import os
import socket
import sys

import httpx


def main(piece: str) -> int:
    if piece == "api":
        port = os.environ.get("TTS_PORT", "8000")
        return 0 if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).is_success else 1
    if piece == "flower":
        port = os.environ.get("TTS_FLOWER_PORT", "5555")
        user, _, password = os.environ.get("FLOWER_BASIC_AUTH", "").partition(":")
        resp = httpx.get(f"http://127.0.0.1:{port}/", auth=(user, password), timeout=5)
        return 0 if resp.is_success else 1
    from common.redis_client import connect_redis
    from common.settings import Settings
    from common.worker.registry import alive_workers

    host = socket.gethostname()
    for beat in alive_workers(connect_redis(Settings())):
        if beat.hostname == host and beat.kind == piece and (beat.ready or piece == "io"):
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
