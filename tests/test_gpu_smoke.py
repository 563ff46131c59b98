"""The real IndexTTS2 on a real GPU: runs only with TTS_GPU_TESTS=1, weights and CUDA.

TTS_GPU_TESTS=1 INDEXTTS_MODEL_DIR=/root/autodl-tmp/models/IndexTTS-2 pytest tests/test_gpu_smoke.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from common.schemas.job_request import JobRequest
from common.settings import Settings

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        os.environ.get("TTS_GPU_TESTS") != "1",
        reason="GPU smoke test: set TTS_GPU_TESTS=1 where weights and a GPU exist",
    ),
]


def test_index_tts2_speaks_a_sentence_on_the_gpu(tmp_path: Path) -> None:
    from gpu_worker.engines.indextts import IndexTTS2Engine

    settings = Settings(data_dir=tmp_path, backend="index_tts2")
    engine = IndexTTS2Engine(settings)
    engine.warmup()
    started = time.perf_counter()
    out = engine.synthesize(
        JobRequest.model_validate(
            {
                "text": "大家好，这是一次在真实显卡上的合成测试。",
                "emotion": {"vector": {"happy": 0.5}, "alpha": 0.8},
            }
        )
    )
    elapsed = time.perf_counter() - started
    assert out.sample_rate == 22050
    assert 1.0 < out.duration_s < 30.0
    print(
        f"\n{out.duration_s:.2f}s of audio in {elapsed:.2f}s (RTF {elapsed / out.duration_s:.3f}); "
        f"{engine.memory_mb():.0f} MiB reserved; {engine.model_version}"
    )
