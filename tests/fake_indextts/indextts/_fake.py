"""What the fake v2 and v2.5 models share."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: Upstream's generation defaults, as `infer` pops them from **generation_kwargs.
DEFAULTS = {
    "top_p": 0.8,
    "top_k": 30,
    "temperature": 0.8,
    "length_penalty": 0.0,
    "num_beams": 3,
    "repetition_penalty": 10.0,
    "max_mel_tokens": 1500,
}


class OutOfMemoryError(RuntimeError):
    """Named like torch.OutOfMemoryError (torch.cuda.OutOfMemoryError)."""


class FakeModelBase:
    def __init__(self, **constructor: Any) -> None:
        cfg = Path(constructor["cfg_path"])
        if not cfg.exists():
            raise FileNotFoundError(cfg)
        self.constructor = constructor
        self.device = constructor.get("device") or "cpu"
        self.qwen_emo = object() if constructor.get("use_qwen_emo", True) else None
        self.cache_spk_audio_prompt: str | None = None
        self.speaker_loads = 0
        _record({"event": "construct", "kwargs": constructor})

    def _speak(self, spk_audio_prompt: str, text: str, call: dict[str, Any]) -> tuple[int, Any]:
        if not Path(spk_audio_prompt).is_file():
            raise FileNotFoundError(spk_audio_prompt)
        if self.cache_spk_audio_prompt != spk_audio_prompt:  # upstream's cache key: the path
            self.cache_spk_audio_prompt = spk_audio_prompt
            self.speaker_loads += 1
        call["speaker_loads"] = self.speaker_loads
        _record(call)
        time.sleep(float(os.environ.get("FAKE_INDEXTTS_DELAY_S", "0")))  # a GPU's seconds
        if "oom" in text:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if not any(ch.isalnum() for ch in text):
            # Real 2.0.1 speaks text that is only punctuation (some sound, not an error).
            text = "mm"
        gen = {**DEFAULTS, **call["generation_kwargs"]}
        if gen["max_mel_tokens"] < len(text) * 4:  # fake: ~4 mel tokens per character
            warnings.warn(
                f"WARN: generation stopped due to exceeding `max_mel_tokens` "
                f"({gen['max_mel_tokens']}). Input text tokens: {len(text)}.",
                category=RuntimeWarning,
                stacklevel=2,
            )
        from common.schemas.job_request import JobRequest
        from gpu_worker.engines.espeak import EspeakEngine

        out = EspeakEngine().synthesize(JobRequest(text=text))
        wav = np.frombuffer(out.pcm16, dtype=np.int16).reshape(-1, 1)
        return out.sample_rate, wav


def _record(entry: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_INDEXTTS_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
