"""`ttsq up` and `ttsq say` as a user runs them: the README's first command, for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from common import embedded_redis
from common.settings import Settings
from tests.support.servers import REPO, free_port, wait_for
from tests.support.stack import wav_ok
from ttsq import stack as ttsq_stack

pytestmark = pytest.mark.integration


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "INDEXTTS_"))}
    env.update(
        TTS_DATA_DIR=str(tmp_path / "var"),
        TTS_PORT=str(free_port()),
        TTS_FLOWER_PORT=str(free_port()),
        TTS_EMBEDDED_REDIS_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    return env


def test_up_runs_the_whole_stack_say_speaks_through_it_and_ctrl_c_stops_all(
    tmp_path: Path,
) -> None:
    env = clean_env(tmp_path)
    base = f"http://127.0.0.1:{env['TTS_PORT']}"
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "ttsq.cli", "up"], env=env, cwd=REPO, stdout=log, stderr=log
        )
    try:
        key_file = tmp_path / "var" / "api_key"
        wait_for(key_file.exists, 30, "the generated API key")
        key = key_file.read_text().strip()

        def ready() -> bool:
            try:
                r = httpx.get(f"{base}/ready", headers={"X-Api-Key": key}, timeout=2)
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 90, "`ttsq up` to be ready", every=0.3)
        assert httpx.get(f"{base}/v1/jobs", timeout=5).status_code == 401  # never open
        # On loopback the docs are served, and the banner says where.
        assert "swagger" in httpx.get(f"{base}/docs", timeout=5).text.lower()
        assert f"API     {base}  (docs at {base}/docs)" in (tmp_path / "up.log").read_text()
        out = tmp_path / "hello.wav"
        # Another shell, without TTS_PORT: `say` finds the stack through its data dir.
        shell = {k: v for k, v in env.items() if k != "TTS_PORT"}
        said = subprocess.run(
            [sys.executable, "-m", "ttsq.cli", "say", "Hello from ttsq.", "-o", str(out)],
            env=shell,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert said.returncode == 0, said.stderr
        assert wav_ok(out.read_bytes()) > 0.5
        # Anywhere else: TTS_SERVICE_URL with the key in its user-info.
        elsewhere = {k: v for k, v in shell.items() if k != "TTS_DATA_DIR"}
        elsewhere["TTS_DATA_DIR"] = str(tmp_path / "elsewhere")
        elsewhere["TTS_SERVICE_URL"] = base.replace("http://", f"http://me:{key}@")
        status = subprocess.run(
            [sys.executable, "-m", "ttsq.cli", "status"],
            env=elsewhere,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert f"{base}: " in status.stdout and key not in status.stdout + status.stderr
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C
        code = up.wait(60)
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    for port in ("TTS_PORT", "TTS_EMBEDDED_REDIS_PORT"):
        assert embedded_redis.port_free(int(env[port])), f"{port} still served after Ctrl-C"


def test_up_stops_the_embedded_redis_when_a_later_piece_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_popen = subprocess.Popen

    def popen(args: list[str], *a: Any, **kw: Any) -> Any:
        if args[-1] == "worker":
            raise OSError(24, "Too many open files")
        return real_popen(args, *a, **kw)

    monkeypatch.setattr(ttsq_stack.subprocess, "Popen", popen)
    port = free_port()
    settings = Settings(data_dir=tmp_path / "var", embedded_redis_port=port, port=free_port())
    with pytest.raises(OSError, match="Too many open files"):
        ttsq_stack.run_stack(settings)
    assert embedded_redis.port_free(port)
