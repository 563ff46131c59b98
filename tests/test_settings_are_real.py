"""Settings and reported values are real: a setting the installed code cannot honour stops the
worker, and what the engine reports (its sample rate) is read off the model, not assumed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from common.errors import EngineLoadError
from common.schemas.job_request import JobRequest
from common.settings import Settings
from gpu_worker.engines.indextts import IndexTTS2Engine
from tests.support.servers import REPO
from tests.test_indextts_engine import install_module, settings


class NoDeviceIndexTTS2:
    """A constructor without `device` (the model picks its own), speaking at 24 kHz."""

    def __init__(self, cfg_path: str, model_dir: str, use_fp16: bool = False) -> None:
        pass

    def infer(self, spk_audio_prompt: str, text: str, output_path: str | None, **kw: Any) -> Any:
        return 24000, np.zeros((2400, 1), dtype=np.int16) + 1000


def test_a_device_the_installed_version_cannot_take_stops_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_module(monkeypatch, NoDeviceIndexTTS2)
    with pytest.raises(EngineLoadError, match="INDEXTTS_DEVICE=cuda:1"):
        IndexTTS2Engine(settings(tmp_path, indextts_device="cuda:1", indextts_use_fp16=False))


def test_the_reported_sample_rate_is_the_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_module(monkeypatch, NoDeviceIndexTTS2)
    engine = IndexTTS2Engine(settings(tmp_path, indextts_use_fp16=False))
    engine.warmup()
    assert engine.capabilities().sample_rate == 24000
    assert engine.synthesize(JobRequest(text="hi")).sample_rate == 24000


def test_ready_says_redis_is_unreachable_when_it_is(tmp_path: Path) -> None:
    app = create_app(
        Settings(redis_url="redis://127.0.0.1:9/0", data_dir=tmp_path, api_key="k" * 20)
    )

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/ready", headers={"X-Api-Key": "k" * 20})

    r = asyncio.run(ask())
    assert r.status_code == 503
    assert "Redis is unreachable" in r.json()["error"]["message"]


def test_the_api_the_cpu_engine_and_the_worker_never_import_torch() -> None:
    # torch is not installed in this venv, so "not in sys.modules" would prove nothing:
    # make importing it fail loudly, then load and use everything a CPU deployment runs.
    script = textwrap.dedent(
        """
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch was imported")

        sys.meta_path.insert(0, NoTorch())
        import api.app, gpu_worker.tasks, common.audio.deliver
        from common.schemas.jobs import JobRequest
        from gpu_worker.engines.espeak import EspeakEngine
        from common.audio.deliver import deliver
        from common.audio.wav import encode_wav
        out = EspeakEngine().synthesize(JobRequest(text="no torch here"))
        wav = encode_wav(out.pcm16, out.sample_rate)
        deliver(wav, JobRequest(text="x", format="mp3", target_duration_s=1.0), max_stretch=2)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
