"""Batched against unbatched on the real upstream code: prints one JSON line.

    .venv-indextts/bin/python tests/support/indextts_batched.py MODEL_DIR DATA_DIR

Runs the same requests through `IndexTTS2Engine.synthesize` one by one, then through
`synthesize_many` at once, under deterministic decoding (top_k 1, one beam). The flow-matching
stage starts from random noise; here each of its calls starts from the same seed, in both runs,
so the two runs' audio can be compared sample by sample. Every code sequence the GPT stage
hands on (to the semantic codec) is recorded in both runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
GREEDY = {"top_k": 1, "num_beams": 1}


def requests() -> list[Any]:
    from common.schemas.job_request import JobRequest

    lines: list[dict[str, Any]] = [
        {"text": "今天天气很好，我们一起去公园散步吧。"},
        {"text": "The quick brown fox jumps over the lazy dog.", "voice": "second"},
        {"text": "短句。", "emotion": {"vector": {"happy": 0.6}}},
        {
            "text": "A line in the second voice, with an emotion reference.",
            "voice": "second",
            "emotion": {"audio": "default"},
        },
        # Settings of its own: not batched with the others; and cut at the limit.
        {"text": "A line cut short.", "generation": {**GREEDY, "max_mel_tokens": 50}},
        {"text": "No such voice.", "voice": "nobody"},
    ]
    return [JobRequest.model_validate({"generation": GREEDY, **line}) for line in lines]


def main() -> int:
    model_dir, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    import torch

    from common.audio.wav import encode_wav
    from common.schemas.job_request import JobRequest
    from common.settings import Settings
    from gpu_worker.engines.espeak import EspeakEngine
    from gpu_worker.engines.indextts import IndexTTS2Engine

    voices = data_dir / "batch-voices"
    voices.mkdir(parents=True, exist_ok=True)
    second = EspeakEngine().synthesize(JobRequest(text="A second speaker, somewhat longer."))
    (voices / "second.wav").write_bytes(encode_wav(second.pcm16, second.sample_rate))
    settings = Settings(
        indextts_model_dir=model_dir,
        data_dir=data_dir,
        voices_dir=voices,
        indextts_device="cpu",
        indextts_use_fp16=False,
        engine_batch=8,
    )
    engine = IndexTTS2Engine(settings)
    model = engine.model
    cfm = model.s2mel.models["cfm"]
    codes: list[list[int]] = []

    def seeded(*args: Any, _run: Any = cfm.inference, **kwargs: Any) -> Any:
        torch.manual_seed(1234)
        return _run(*args, **kwargs)

    def recorded(c: Any, _emb: Any = model.semantic_codec.quantizer.vq2emb) -> Any:
        codes.append(c.reshape(-1).tolist())
        return _emb(c)

    cfm.inference = seeded
    model.semantic_codec.quantizer.vq2emb = recorded
    items = requests()

    def one(request: Any) -> Any:
        try:
            return engine.synthesize(request)
        except Exception as exc:
            return exc

    single = [one(r) for r in items]
    single_codes, codes[:] = list(codes), []
    batched = engine.synthesize_many(items, [None] * len(items))
    report = []
    for a, b in zip(single, batched, strict=True):
        if isinstance(a, Exception) or isinstance(b, Exception):
            report.append({"single": repr(a)[:200], "batched": repr(b)[:200]})
            continue
        x, y = np.frombuffer(a.pcm16, "<i2"), np.frombuffer(b.pcm16, "<i2")
        diff = int(np.abs(x.astype(int) - y.astype(int)).max()) if len(x) == len(y) else None
        report.append(
            {
                "samples": [len(x), len(y)],
                "max_diff": diff,
                "warnings": [a.warnings, b.warnings],
            }
        )
    print(
        json.dumps(
            {
                "items": report,
                "single_codes": sorted(single_codes),
                "batched_codes": sorted(codes),
                "largest_batch": engine.batcher.largest_batch,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
