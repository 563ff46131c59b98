"""Fake `indextts.infer_v2_5.IndexTTS2` (IndexTTS-2.5) with upstream's signatures."""

from __future__ import annotations

from typing import Any

from indextts._fake import FakeModelBase


class IndexTTS2(FakeModelBase):
    def __init__(
        self,
        cfg_path: str = "checkpoints/config.yaml",
        model_dir: str = "checkpoints",
        use_bf16: bool = False,
        device: str | None = None,
        use_cuda_kernel: bool | None = None,
        use_deepspeed: bool = False,
        use_accel: bool = False,
        use_torch_compile: bool = False,
        use_qwen_emo: bool = False,
    ) -> None:
        super().__init__(
            cfg_path=cfg_path,
            model_dir=model_dir,
            use_bf16=use_bf16,
            device=device,
            use_cuda_kernel=use_cuda_kernel,
            use_deepspeed=use_deepspeed,
            use_accel=use_accel,
            use_torch_compile=use_torch_compile,
            use_qwen_emo=use_qwen_emo,
        )

    def infer(
        self,
        spk_audio_prompt: str,
        text: str,
        output_path: str | None,
        lang: str,
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
        duration_factor: float = 1.0,
        text_normalization: bool = True,
        **generation_kwargs: Any,
    ) -> Any:
        call = {
            "event": "infer",
            "module": "infer_v2_5",
            "lang": lang,
            "text": text,
            "spk_audio_prompt": spk_audio_prompt,
            "emo_vector": emo_vector,
            "emo_alpha": emo_alpha,
            "duration_factor": duration_factor,
            "generation_kwargs": generation_kwargs,
        }
        return self._speak(spk_audio_prompt, text, call)
