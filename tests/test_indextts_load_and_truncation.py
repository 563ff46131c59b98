"""The engine's answers to what the real tts-webui-index-tts 2.0.1 does (issue 8), against
stand-ins that do the same thing: it reads the hub cache layout, fails to build with a raw
OSError when a piece is missing, crashes after warning at max_mel_tokens, and writes its text
normaliser's cache where it is told."""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from common.errors import EngineLoadError
from common.schemas.job_request import JobRequest
from common.settings import Settings
from gpu_worker.engines.indextts import IndexTTS2Engine
from tests.test_indextts_engine import make_model_dir


class Like201:
    """2.0.1's constructor and infer, and its failure at max_mel_tokens."""

    stop_mel_token = 8193
    calls: ClassVar[list[dict[str, Any]]] = []
    fail_with: ClassVar[Exception | None] = None

    def __init__(
        self,
        cfg_path: str = "checkpoints/config.yaml",
        model_dir: str = "checkpoints",
        use_fp16: bool = False,
        device: str | None = None,
        use_cuda_kernel: bool | None = None,
        use_deepspeed: bool = False,
    ) -> None:
        if Like201.fail_with is not None:
            raise Like201.fail_with
        import tn.chinese.normalizer as zh

        self.normalizer = zh.Normalizer(cache_dir="/site-packages/indextts/utils/tagger_cache")
        Like201.calls = []

    def infer(
        self, spk_audio_prompt: str, text: str, output_path: str | None, **kw: Any
    ) -> tuple[int, Any]:
        Like201.calls.append(kw)
        limit = kw.get("max_mel_tokens", 1500)
        if len(text) * 4 > limit and "forced_eos_token_id" not in kw:
            warnings.warn(
                f"WARN: generation stopped due to exceeding `max_mel_tokens` ({limit}).",
                RuntimeWarning,
                stacklevel=2,
            )
            raise RuntimeError("Sizes of tensors must match except in dimension 1.")
        return 22050, np.full((2205, 1), 0.25, dtype=np.float32)


@pytest.fixture
def like_201(monkeypatch: pytest.MonkeyPatch) -> type[Like201]:
    module = types.ModuleType("indextts.infer_v2")
    module.IndexTTS2 = Like201  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "indextts", types.ModuleType("indextts"))
    monkeypatch.setitem(sys.modules, "indextts.infer_v2", module)
    zh = types.ModuleType("tn.chinese.normalizer")
    zh.Normalizer = lambda **kw: kw  # type: ignore[attr-defined]
    for name in ("tn", "tn.chinese"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "tn.chinese.normalizer", zh)
    sys.modules["tn"].chinese = sys.modules["tn.chinese"]  # type: ignore[attr-defined]
    sys.modules["tn.chinese"].normalizer = zh  # type: ignore[attr-defined]
    Like201.fail_with = None
    return Like201


def settings(tmp_path: Path, *, hub: bool = True) -> Settings:
    model_dir = make_model_dir(tmp_path / "model", hub=hub)
    return Settings(indextts_model_dir=model_dir, data_dir=tmp_path / "data")


def test_a_version_without_aux_paths_is_checked_in_the_hub_layout(
    like_201: type[Like201], tmp_path: Path
) -> None:
    with pytest.raises(EngineLoadError) as err:
        IndexTTS2Engine.preflight(settings(tmp_path, hub=False))
    message = err.value.message
    assert "hub cache layout" in message and "tts-webui-index-tts 2.0.1" in message
    assert "hf_cache/models--facebook--w2v-bert-2.0/refs/main (facebook/w2v-bert-2.0)" in message
    assert "models--nvidia--bigvgan_v2_22khz_80band_256x" in message


def test_a_missing_file_in_a_hub_snapshot_is_named(like_201: type[Like201], tmp_path: Path) -> None:
    s = settings(tmp_path)
    snapshot = s.indextts_model_dir / "hf_cache/models--funasr--campplus/snapshots/abc123"
    (snapshot / "campplus_cn_common.bin").unlink()
    with pytest.raises(EngineLoadError, match=r"snapshots/abc123/campplus_cn_common.bin"):
        IndexTTS2Engine(s)


def test_a_complete_hub_layout_passes_preflight(like_201: type[Like201], tmp_path: Path) -> None:
    IndexTTS2Engine.preflight(settings(tmp_path))


def test_any_failure_to_build_is_an_engine_load_error_naming_it(
    like_201: type[Like201], tmp_path: Path
) -> None:
    like_201.fail_with = OSError(
        "We couldn't connect to 'https://huggingface.co' to load the files of facebook/w2v-bert-2.0"
    )
    with pytest.raises(EngineLoadError) as err:
        IndexTTS2Engine(settings(tmp_path))
    assert "building the model from" in err.value.message
    assert "OSError" in err.value.message and "facebook/w2v-bert-2.0" in err.value.message


def test_the_truncation_crash_becomes_audio_with_a_warning(
    like_201: type[Like201], tmp_path: Path
) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))
    request = JobRequest.model_validate(
        {"text": "a line far too long for a limit of fifty", "generation": {"max_mel_tokens": 50}}
    )
    out = engine.synthesize(request)
    assert len(out.pcm16) == 2205 * 2
    assert len(out.warnings) == 1 and "max_mel_tokens (50)" in out.warnings[0]
    first, retry = like_201.calls
    assert "forced_eos_token_id" not in first
    assert retry == {"max_mel_tokens": 50, "forced_eos_token_id": 8193}


def test_a_shape_error_without_the_warning_is_not_mistaken_for_truncation(
    like_201: type[Like201], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("Sizes of tensors must match except in dimension 1.")

    monkeypatch.setattr(engine.model, "infer", broken)
    with pytest.raises(RuntimeError, match="Sizes of tensors"):
        engine.synthesize(JobRequest(text="hi"))


def test_the_normalisers_cache_goes_to_the_data_dir(
    like_201: type[Like201], tmp_path: Path
) -> None:
    s = settings(tmp_path)
    engine = IndexTTS2Engine(s)
    assert engine.model.normalizer["cache_dir"] == str(s.data_dir / "indextts-tagger-cache")
    import tn.chinese.normalizer as zh

    assert zh.Normalizer(cache_dir="x") == {"cache_dir": "x"}  # put back after the build
