"""Fake `indextts.infer_v2.IndexTTS2` with upstream's signatures at ee40fa7d6c."""

from __future__ import annotations

import os
import warnings
from typing import Any

from indextts._fake import FakeModelBase

# What upstream's module does when imported, process-wide.
os.environ["HF_HUB_CACHE"] = "./checkpoints/hf_cache"
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


class IndexTTS2(FakeModelBase):
    def __init__(
        self,
        cfg_path: str = "checkpoints/config.yaml",
        model_dir: str = "checkpoints",
        use_fp16: bool = False,
        device: str | None = None,
        use_cuda_kernel: bool | None = None,
        use_deepspeed: bool = False,
        use_accel: bool = False,
        use_torch_compile: bool = False,
        use_qwen_emo: bool = True,
        aux_paths: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            cfg_path=cfg_path,
            model_dir=model_dir,
            use_fp16=use_fp16,
            device=device,
            use_cuda_kernel=use_cuda_kernel,
            use_deepspeed=use_deepspeed,
            use_accel=use_accel,
            use_torch_compile=use_torch_compile,
            use_qwen_emo=use_qwen_emo,
            aux_paths=aux_paths,
        )

    def infer(
        self,
        spk_audio_prompt: str,
        text: str,
        output_path: str | None,
        emo_audio_prompt: str | None = None,
        emo_alpha: float = 1.0,
        emo_vector: list[float] | None = None,
        use_emo_text: bool = False,
        emo_text: str | None = None,
        use_random: bool = False,
        interval_silence: int = 200,
        verbose: bool = False,
        max_text_tokens_per_segment: int = 120,
        stream_return: bool = False,
        more_segment_before: int = 0,
        **generation_kwargs: Any,
    ) -> Any:
        assert output_path is None and not stream_return
        call = {
            "event": "infer",
            "module": "infer_v2",
            "spk_audio_prompt": spk_audio_prompt,
            "text": text,
            "emo_audio_prompt": emo_audio_prompt,
            "emo_alpha": emo_alpha,
            "emo_vector": emo_vector,
            "use_emo_text": use_emo_text,
            "emo_text": emo_text,
            "use_random": use_random,
            "interval_silence": interval_silence,
            "max_text_tokens_per_segment": max_text_tokens_per_segment,
            "generation_kwargs": generation_kwargs,
        }
        return self._speak(spk_audio_prompt, text, call)
