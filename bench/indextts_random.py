"""IndexTTS2 throughput on a GPU with full-size random weights (no download needed).

    .venv-indextts/bin/python bench/indextts_random.py [--device cuda:0] [--lines 5] [--codes 300]

Builds a model dir at the real dimensions with tools/tiny_indextts.py --full (GPT 24 layers
x 1280, DiT 13 x 512, w2v-BERT 24 x 1024, BigVGAN v2 22 kHz), with the stop token planted after
`--codes` codes, so every line costs what a line of that many codes costs the real model. Then
it times upstream's `infer()` directly: mel tokens/s of the GPT stage, s2mel and vocoder
seconds per audio second (from upstream's own stage timers), fp16 against fp32, num_beams 3
against 1. Through-the-queue RTF: run bench/engine_vs_queue.py with TTS_BACKEND=index_tts2 and
INDEXTTS_MODEL_DIR pointing at the same dir (`--keep DIR` keeps it).

Random weights do the same arithmetic as trained ones for a given number of codes; only the
number of codes per line differs (planted here, learnt there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LINES = ["今天天气很好，我们一起去公园散步吧。", "The quick brown fox jumps over the lazy dog."]
STAGES = ("gpt_gen_time", "gpt_forward_time", "s2mel_time", "bigvgan_time")


def run(model: Any, ref: str, lines: int, codes: int, **gen: Any) -> dict[str, float]:
    totals = dict.fromkeys(STAGES, 0.0)
    audio_s = wall = 0.0
    for i in range(lines):
        out = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):  # upstream reports its stage times on stdout
            sr, wav = model.infer(ref, LINES[i % len(LINES)], None, **gen)
        wall += time.perf_counter() - start
        audio_s += len(wav) / sr
        for stage in STAGES:
            m = re.search(rf">> {stage}: ([\d.]+)", out.getvalue())
            totals[stage] += float(m.group(1)) if m else 0.0
    return {
        "rtf": wall / audio_s,
        "gpt_tokens_per_s": codes * lines / totals["gpt_gen_time"],
        "s2mel_s_per_audio_s": totals["s2mel_time"] / audio_s,
        "vocoder_s_per_audio_s": totals["bigvgan_time"] / audio_s,
        "audio_s_per_line": audio_s / lines,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--lines", type=int, default=5)
    parser.add_argument("--codes", type=int, default=300, help="codes per line (~6 s of audio)")
    parser.add_argument("--keep", type=Path, help="build the model dir here and keep it")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tools"))
    from tiny_indextts import build

    root = args.keep or Path(tempfile.mkdtemp(prefix="indextts-full-"))
    model_dir = root / "model"
    if not (model_dir / "gpt.pth").exists():
        start = time.monotonic()
        build(model_dir, full=True, codes=args.codes)
        print(f"built full-size random weights in {time.monotonic() - start:.0f} s")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = str(model_dir / "hf_cache")
    import huggingface_hub.constants  # noqa: F401  pins the cache before upstream resets it
    import torch
    from indextts.infer_v2 import IndexTTS2

    from common.audio.wav import encode_wav
    from common.schemas.job_request import JobRequest
    from gpu_worker.engines.espeak import EspeakEngine

    ref = root / "ref.wav"
    out = EspeakEngine().synthesize(JobRequest(text="你好，欢迎收听。Hello, and welcome."))
    ref.write_bytes(encode_wav(out.pcm16, out.sample_rate))
    print(f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")
    for fp16 in (False, True):
        model = IndexTTS2(
            cfg_path=str(model_dir / "config.yaml"),
            model_dir=str(model_dir),
            use_fp16=fp16,
            device=args.device,
        )
        run(model, str(ref), 1, args.codes)  # warm-up: speaker cache, kernels
        for beams in (3, 1):
            figures = run(model, str(ref), args.lines, args.codes, num_beams=beams)
            line = "  ".join(f"{k} {v:.3f}" for k, v in figures.items())
            print(f"fp16={fp16!s:5} num_beams={beams}  {line}")
        if torch.cuda.is_available():
            print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return 0


if __name__ == "__main__":
    sys.exit(main())
