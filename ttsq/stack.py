"""`ttsq up`: the whole stack on one machine, as child processes, stopped together.

Redis (embedded unless TTS_REDIS_URL is set), the API, the synthesis worker, the I/O worker and
Flower. Ctrl-C or SIGTERM stops them all; if one dies, the rest are stopped too, so a broken
stack is never mistaken for a running one. Deployments supervise the pieces one by one instead.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from common import embedded_redis
from common.settings import Settings
from ttsq.discovery import clear_stack, write_stack

GRACE_S = 30.0


def ensure_api_key(settings: Settings) -> str | None:
    """With no key configured, make one (kept in the data dir) so the stack is never open."""
    if settings.auth_enabled:
        return None
    path = settings.data_dir / "api_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def run_stack(settings: Settings) -> int:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        return _run(settings, procs)
    finally:
        _stop_all(procs)  # whatever started, even if a later piece failed to
        clear_stack(settings)


def _run(settings: Settings, procs: dict[str, subprocess.Popen[bytes]]) -> int:
    env = dict(os.environ)
    generated_key = ensure_api_key(settings)
    if generated_key:
        env["TTS_API_KEY"] = generated_key
    if not settings.redis_url:
        port = settings.embedded_redis_port
        if not embedded_redis.port_free(port):
            print(f"port {port} is taken: is another `ttsq up` running?", file=sys.stderr)
            return 1
        redis_dir = settings.data_dir / "redis"
        procs["redis"] = embedded_redis.start(redis_dir, port, log_file=redis_dir / "redis.log")
        env["TTS_REDIS_URL"] = embedded_redis.url(port)
    for piece in ("api", "worker", "io", "flower"):
        procs[piece] = subprocess.Popen([sys.executable, "-m", "ttsq.cli", piece], env=env)

    key_file = settings.data_dir / "api_key" if generated_key else None
    found = write_stack(settings, key_file)
    docs = f"  (docs at {settings.base_url}/docs)" if settings.docs_served else ""
    print(
        f"ttsq is up\n  API     {settings.base_url}{docs}\n"
        f"  Flower  http://127.0.0.1:{settings.flower_port}\n"
        f"  Redis   {env.get('TTS_REDIS_URL', settings.redis_url)}\n"
        f"  data    {Path(settings.data_dir).resolve()}"
    )
    if generated_key:
        print(f"  API key {generated_key}  (kept in {settings.data_dir / 'api_key'})")
    print(f"  found by `ttsq say`, `batch`, `dub` and `status` through {found}")
    print("Ctrl-C stops everything.", flush=True)

    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the stack", file=sys.stderr)
                stopping, code = True, 1
        time.sleep(0.5)
    return code


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM everything but Redis, wait (workers finish or return the job in hand), then Redis."""
    pieces = [p for n, p in procs.items() if n != "redis"]
    _terminate(pieces)
    if "redis" in procs:
        _terminate([procs["redis"]])


def _terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
