"""IndexTTS2 throughput on random weights (no download): upstream direct, and ttsq's batches.

    .venv-indextts/bin/python bench/indextts_random.py [--device cuda:0] [--json OUT]
    .venv-indextts/bin/python bench/indextts_random.py --tiny --device cpu   # on a CPU

Builds a model dir of random weights with tools/tiny_indextts.py: the real dimensions by
default (GPT 24 layers x 1280, DiT 13 x 512, w2v-BERT 24 x 1024, BigVGAN v2 22 kHz), small with
`--tiny`; the stop token is planted after `--codes` codes, so every line costs what a line of
that many codes costs the real model. Random weights do the same arithmetic as trained ones for
a given number of codes; only the number of codes per line differs (planted here, learnt there).

Two parts, for each precision in `--precisions`:

- direct: upstream's own `infer()`, one line at a time: RTF, GPT tokens/s, and s2mel and
  vocoder seconds per audio second (from upstream's stage timers);
- batched: ttsq's adapter (`IndexTTS2Engine.synthesize_many`) given `--lines` lines `b` at a
  time for each `b` in `--batches`: audio seconds per engine second, the GPT stage's share of
  the time, and the ratio to batch 1, all measured in this one run.

Generation is the service's default (upstream's: sampling, 3 beams) unless `--greedy`.
Through the whole queue: bench/engine_vs_queue.py with TTS_BACKEND=index_tts2 and
INDEXTTS_MODEL_DIR at the same dir (`--keep DIR` keeps it). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LINES = ["今天天气很好，我们一起去公园散步吧。", "The quick brown fox jumps over the lazy dog."]
STAGES = ("gpt_gen_time", "gpt_forward_time", "s2mel_time", "bigvgan_time")


def direct(model: Any, ref: str, lines: int, codes: int, **gen: Any) -> dict[str, float]:
    """Upstream's `infer()`, one line at a time, with its own stage timers."""
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
        "gpt_tokens_per_s": codes * lines / max(totals["gpt_gen_time"], 1e-9),
        "s2mel_s_per_audio_s": totals["s2mel_time"] / audio_s,
        "vocoder_s_per_audio_s": totals["bigvgan_time"] / audio_s,
        "audio_s_per_line": audio_s / lines,
    }


def batched(engine: Any, lines: int, sizes: list[int], gen: dict[str, Any]) -> dict[str, Any]:
    """The adapter's batches: audio seconds per engine second at each batch size."""
    from common.schemas.job_request import JobRequest

    gpt = type(engine.model.gpt)
    inner = gpt.inference_speech
    gpt_s = [0.0]

    @functools.wraps(inner)  # the batcher reads its signature
    def timed(*args: Any, **kwargs: Any) -> Any:  # the GPT stage, batched or not
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            gpt_s[0] += time.perf_counter() - start

    requests = [
        JobRequest(text=LINES[i % len(LINES)], generation=gen or None) for i in range(lines)
    ]
    figures: dict[str, Any] = {}
    gpt.inference_speech = timed
    try:
        for size in sizes:
            engine.batcher.max_batch = size
            gpt_s[0] = audio_s = 0.0
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                for first in range(0, lines, size):
                    chunk = requests[first : first + size]
                    for out in engine.synthesize_many(chunk, [None] * len(chunk)):
                        if isinstance(out, Exception):
                            raise out
                        audio_s += out.duration_s
            wall = time.perf_counter() - start
            figures[str(size)] = {
                "audio_s_per_engine_s": audio_s / wall,
                "gpt_share": gpt_s[0] / wall,
                "engine_s": wall,
            }
    finally:
        gpt.inference_speech = inner
    base = figures[str(sizes[0])]["audio_s_per_engine_s"]
    for size in sizes:
        figures[str(size)][f"vs_batch_{sizes[0]}"] = (
            figures[str(size)]["audio_s_per_engine_s"] / base
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--tiny", action="store_true", help="small random weights (CPU runs)")
    parser.add_argument("--lines", type=int, default=8, help="lines per measurement")
    parser.add_argument("--codes", type=int, default=300, help="codes per line (~6 s of audio)")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument(
        "--precisions", default="fp16,fp16-accel,fp32", help="fp16 and -accel need a GPU"
    )
    parser.add_argument("--greedy", action="store_true", help="top_k 1, one beam")
    parser.add_argument("--skip-direct", action="store_true")
    parser.add_argument("--keep", type=Path, help="build the model dir here and keep it")
    parser.add_argument("--data-dir", type=Path, help="ttsq's data dir (normaliser cache)")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tools"))
    from tiny_indextts import build

    root = args.keep or Path(tempfile.mkdtemp(prefix="indextts-random-"))
    model_dir = root / "model"
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not (model_dir / "gpt.pth").exists():
        start = time.monotonic()
        build(model_dir, full=not args.tiny, codes=args.codes)
        report["weights_built_s"] = round(time.monotonic() - start, 1)
    os.environ["HF_HUB_OFFLINE"] = "1"  # the adapter points the hub cache at the model dir
    import torch

    from common.audio.wav import encode_wav
    from common.errors import EngineLoadError
    from common.schemas.job_request import JobRequest
    from common.settings import Settings
    from gpu_worker.engines.espeak import EspeakEngine
    from gpu_worker.engines.indextts import IndexTTS2Engine

    cuda = torch.cuda.is_available() and args.device.startswith("cuda")
    report["machine"] = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    voices = root / "voices"
    voices.mkdir(exist_ok=True)
    ref = EspeakEngine().synthesize(JobRequest(text="你好，欢迎收听。Hello, and welcome."))
    (voices / "default.wav").write_bytes(encode_wav(ref.pcm16, ref.sample_rate))
    gen: dict[str, Any] = {"top_k": 1, "num_beams": 1} if args.greedy else {}
    sizes = [int(b) for b in args.batches.split(",")]
    for precision in args.precisions.split(","):
        if precision.startswith("fp16") and not cuda:
            continue
        settings = Settings(
            indextts_model_dir=model_dir,
            data_dir=args.data_dir or root / "data",
            voices_dir=voices,
            indextts_device=args.device,
            indextts_use_fp16=precision.startswith("fp16"),
            indextts_use_accel=True if precision.endswith("accel") else None,
            engine_batch=max(sizes),
        )
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                engine = IndexTTS2Engine(settings)
                engine.warmup()
        except EngineLoadError as exc:  # use_accel where the installed upstream lacks it
            report[precision] = {"error": str(exc)}
            continue
        part: dict[str, Any] = {"model_version": engine.model_version}
        if not args.skip_direct:
            ref_path = str(voices / "default.wav")
            part["direct"] = direct(engine.model, ref_path, args.lines, args.codes, **gen)
        part["batched"] = batched(engine, args.lines, sizes, gen)
        if cuda:
            part["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            del engine
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        report[precision] = part
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
