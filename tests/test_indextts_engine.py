"""The IndexTTS2 engine against a fake upstream package with upstream's signatures."""

from __future__ import annotations

import io
import json
import sys
import types
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from common.capabilities import unsupported
from common.errors import EngineLoadError, TransientError
from common.schemas.job_request import JobRequest
from common.settings import Settings
from gpu_worker.engines import indextts_layout as layout
from gpu_worker.engines.indextts import IndexTTS2Engine, IndexTTS25Engine, to_pcm16

FAKE = Path(__file__).parent / "fake_indextts"


def make_model_dir(
    root: Path, engine: type[IndexTTS2Engine] = IndexTTS2Engine, *, hub: bool = True
) -> Path:
    """Placeholder weights in the flat layout and (with `hub`) the hub cache layout."""
    (root / layout.QWEN_DIR).mkdir(parents=True, exist_ok=True)
    names = [*engine.required_files, *engine.aux_files.values()]
    if hub:
        for repo, files in engine.hub_repos.items():
            cache = root / "hf_cache" / ("models--" + repo.replace("/", "--"))
            (cache / "refs").mkdir(parents=True, exist_ok=True)
            (cache / "refs" / "main").write_text("abc123")
            names += [f"{cache.relative_to(root)}/snapshots/abc123/{f}" for f in files]
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if "." in path.name:
            path.write_bytes(b"weights")
        else:
            path.mkdir(exist_ok=True)
    return root


@pytest.fixture
def fake_upstream(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(FAKE))
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_INDEXTTS_LOG", str(log))
    for env in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(env, raising=False)
    yield log
    for name in [m for m in sys.modules if m == "indextts" or m.startswith("indextts.")]:
        del sys.modules[name]


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    model_dir = make_model_dir(tmp_path / "model")
    return Settings(indextts_model_dir=model_dir, data_dir=tmp_path / "data", **overrides)


def calls(log: Path, event: str = "infer") -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in entries if e["event"] == event]


def test_every_control_reaches_infer_exactly_as_sent(fake_upstream: Path, tmp_path: Path) -> None:
    s = settings(tmp_path)
    (s.data_dir / "voices").mkdir(parents=True)
    (s.data_dir / "voices" / "narrator.wav").write_bytes(b"RIFF-narrator")
    (s.data_dir / "voices" / "angry_ref.wav").write_bytes(b"RIFF-angry")
    engine = IndexTTS2Engine(s)
    request = JobRequest.model_validate(
        {
            "text": "今天的会议取消了。",
            "voice": "narrator",
            "emotion": {"audio": "angry_ref", "alpha": 0.8, "random": False},
            "generation": {
                "temperature": 0.7,
                "top_p": 0.9,
                "top_k": 20,
                "num_beams": 1,
                "repetition_penalty": 8.0,
                "length_penalty": 0.5,
                "max_mel_tokens": 1200,
                "interval_silence": 150,
                "max_text_tokens_per_segment": 80,
            },
        }
    )
    out = engine.synthesize(request)
    call = calls(fake_upstream)[-1]
    assert call["text"] == "今天的会议取消了。"
    assert Path(call["spk_audio_prompt"]).read_bytes() == b"RIFF-narrator"
    assert Path(call["emo_audio_prompt"]).read_bytes() == b"RIFF-angry"
    assert (call["emo_alpha"], call["use_random"]) == (0.8, False)
    assert (call["interval_silence"], call["max_text_tokens_per_segment"]) == (150, 80)
    assert call["generation_kwargs"] == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "num_beams": 1,
        "repetition_penalty": 8.0,
        "length_penalty": 0.5,
        "max_mel_tokens": 1200,
    }
    assert out.sample_rate == 22050 and len(out.pcm16) > 22050 and out.warnings == []


def test_an_emotion_vector_goes_in_upstreams_order(fake_upstream: Path, tmp_path: Path) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))
    engine.synthesize(
        JobRequest.model_validate(
            {"text": "Wow!", "emotion": {"vector": {"surprised": 0.6, "calm": 0.3}, "alpha": 0.9}}
        )
    )
    call = calls(fake_upstream)[-1]
    assert call["emo_vector"] == [0, 0, 0, 0, 0, 0, 0.6, 0.3]
    assert call["emo_alpha"] == 0.9
    assert call["generation_kwargs"] == {}  # nothing sent, nothing passed: upstream defaults


def test_emotion_from_text_uses_upstreams_switch(fake_upstream: Path, tmp_path: Path) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))
    engine.synthesize(
        JobRequest.model_validate({"text": "hi", "emotion": {"text": "furious, shouting"}})
    )
    call = calls(fake_upstream)[-1]
    assert (call["use_emo_text"], call["emo_text"]) == (True, "furious, shouting")


def test_without_the_qwen_model_emotion_from_text_is_refused_naming_the_field(
    fake_upstream: Path, tmp_path: Path
) -> None:
    engine = IndexTTS2Engine(settings(tmp_path, indextts_use_qwen_emo=False))
    request = JobRequest.model_validate({"text": "hi", "emotion": {"text": "furious"}})
    assert unsupported(request, engine.capabilities()) == [
        "emotion.text: not supported by index_tts2"
    ]


def test_constructor_gets_the_installed_versions_arguments(
    fake_upstream: Path, tmp_path: Path
) -> None:
    s = settings(
        tmp_path,
        indextts_use_fp16=True,
        indextts_device="cuda:0",
        indextts_use_accel=True,
        indextts_use_qwen_emo=False,
    )
    IndexTTS2Engine(s)
    kwargs = calls(fake_upstream, "construct")[-1]["kwargs"]
    model_dir = s.indextts_model_dir
    assert kwargs["cfg_path"] == str(model_dir / "config.yaml")
    assert (kwargs["use_fp16"], kwargs["device"], kwargs["use_accel"]) == (True, "cuda:0", True)
    assert kwargs["use_qwen_emo"] is False
    assert kwargs["use_deepspeed"] is False and kwargs["use_torch_compile"] is False  # defaults
    assert kwargs["aux_paths"]["campplus"] == str(model_dir / "hf_cache/campplus_cn_common.bin")


class EarlyIndexTTS2:
    """The constructor as of b6fe850 (2025-09-08): `is_fp16`, no later switches."""

    seen: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        cfg_path: str,
        model_dir: str,
        is_fp16: bool = False,
        device: str | None = None,
        use_cuda_kernel: bool | None = None,
    ) -> None:
        EarlyIndexTTS2.seen = {"cfg_path": cfg_path, "is_fp16": is_fp16, "device": device}

    def infer(
        self,
        spk_audio_prompt: str,
        text: str,
        output_path: str | None,
        max_text_tokens_per_sentence: int = 120,
        **generation_kwargs: Any,
    ) -> Any:
        EarlyIndexTTS2.seen["infer"] = {
            "max_text_tokens_per_sentence": max_text_tokens_per_sentence,
            **generation_kwargs,
        }
        # Like the PyPI copy (tts-webui-index-tts 2.0.1): float audio in ±1.
        return 22050, np.array([[0.5], [-1.5], [0.0]], dtype=np.float32)


def install_module(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    module = types.ModuleType("indextts.infer_v2")
    module.IndexTTS2 = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "indextts", types.ModuleType("indextts"))
    monkeypatch.setitem(sys.modules, "indextts.infer_v2", module)


def test_an_early_constructor_is_detected_not_assumed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_module(monkeypatch, EarlyIndexTTS2)
    engine = IndexTTS2Engine(settings(tmp_path, indextts_use_fp16=True))
    assert EarlyIndexTTS2.seen["is_fp16"] is True
    assert "aux_paths" not in EarlyIndexTTS2.seen
    caps = engine.capabilities()
    assert caps.emotion == [] and "interval_silence" not in caps.generation
    assert "max_text_tokens_per_segment" in caps.generation
    engine.synthesize(
        JobRequest.model_validate({"text": "hi", "generation": {"max_text_tokens_per_segment": 60}})
    )
    assert EarlyIndexTTS2.seen["infer"] == {"max_text_tokens_per_sentence": 60}


def test_a_switch_the_installed_version_lacks_stops_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_module(monkeypatch, EarlyIndexTTS2)
    with pytest.raises(EngineLoadError, match="no `use_accel`"):
        IndexTTS2Engine(settings(tmp_path, indextts_use_accel=True))


def test_float_audio_from_the_pypi_copy_becomes_pcm16() -> None:
    pcm = to_pcm16(np.array([[0.5], [-1.5], [0.0]], dtype=np.float32))
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [16384, -32767, 0]
    ints = np.array([[1], [-2]], dtype=np.int16)
    assert np.frombuffer(to_pcm16(ints), dtype="<i2").tolist() == [1, -2]


def test_hitting_max_mel_tokens_becomes_a_visible_warning(
    fake_upstream: Path, tmp_path: Path
) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))
    out = engine.synthesize(
        JobRequest.model_validate(
            {
                "text": "a rather long sentence that needs many tokens",
                "generation": {"max_mel_tokens": 50},
            }
        )
    )
    assert len(out.warnings) == 1 and "max_mel_tokens (50)" in out.warnings[0]


def test_cuda_out_of_memory_is_transient(fake_upstream: Path, tmp_path: Path) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))
    with pytest.raises(TransientError, match="CUDA out of memory"):
        engine.synthesize(JobRequest(text="oom please"))


def test_text_with_nothing_to_speak_is_a_permanent_input_error(
    fake_upstream: Path, tmp_path: Path
) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))
    out = engine.synthesize(JobRequest(text="。。。"))  # as real 2.0.1 does: some sound
    assert out.pcm16 and not out.warnings


def test_a_model_dir_missing_files_fails_at_start_listing_them(tmp_path: Path) -> None:
    model_dir = tmp_path / "empty"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text("version: 2.0")
    with pytest.raises(EngineLoadError) as err:
        IndexTTS2Engine.preflight(Settings(indextts_model_dir=model_dir))
    message = err.value.message
    assert "gpt.pth" in message and "hf_cache/campplus_cn_common.bin" in message
    assert "config.yaml" not in message.split("lacks")[1].split(";")[0]
    assert "hf download IndexTeam/IndexTTS-2" in message and "HF_ENDPOINT" in message
    assert "modelscope" in message


def test_start_is_offline_with_the_model_dirs_cache_though_upstream_resets_it(
    fake_upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    hub = types.ModuleType("huggingface_hub")
    constants = types.ModuleType("huggingface_hub.constants")
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    monkeypatch.setitem(sys.modules, "huggingface_hub.constants", constants)
    hub.constants = constants  # type: ignore[attr-defined]
    s = settings(tmp_path)
    IndexTTS2Engine(s)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_HUB_CACHE"] == "./checkpoints/hf_cache"  # upstream's import did that
    assert str(s.indextts_model_dir / "hf_cache") == constants.HF_HUB_CACHE  # type: ignore[attr-defined]
    assert constants.HF_HUB_OFFLINE is True  # type: ignore[attr-defined]


def test_importing_upstream_leaves_the_warning_filters_as_they_were(
    fake_upstream: Path, tmp_path: Path
) -> None:
    import warnings

    before = list(warnings.filters)
    IndexTTS2Engine(settings(tmp_path))
    assert warnings.filters == before
    with pytest.warns(UserWarning, match="still heard"):
        warnings.warn("still heard", UserWarning, stacklevel=1)


def test_one_path_never_holds_two_audios(fake_upstream: Path, tmp_path: Path) -> None:
    s = settings(tmp_path)
    voices = s.data_dir / "voices"
    voices.mkdir(parents=True)
    engine = IndexTTS2Engine(s)
    (voices / "host.wav").write_bytes(b"RIFF-first-take")
    first = engine.voices.path("host")
    (voices / "host.wav").write_bytes(b"RIFF-second-take")  # the operator replaced the voice
    second = engine.voices.path("host")
    assert first != second
    assert Path(first).read_bytes() == b"RIFF-first-take"
    assert engine.voices.path("host") == second  # same content, same path: upstream's cache hits


def test_the_voice_cache_is_bounded(tmp_path: Path) -> None:
    from gpu_worker.voices import VoiceCache

    voices = tmp_path / "voices"
    voices.mkdir()
    cache = VoiceCache(voices, tmp_path / "cache", max_files=2)
    for i in range(4):
        (voices / f"v{i}.wav").write_bytes(f"RIFF{i}".encode())
        cache.path(f"v{i}")
    assert len(list((tmp_path / "cache").glob("*.wav"))) == 2


def test_without_a_voice_the_builtin_default_reference_is_real_speech(
    fake_upstream: Path, tmp_path: Path
) -> None:
    engine = IndexTTS2Engine(settings(tmp_path))
    engine.synthesize(JobRequest(text="hello"))
    reference = Path(calls(fake_upstream)[-1]["spk_audio_prompt"]).read_bytes()
    with wave.open(io.BytesIO(reference)) as w:
        assert w.getnframes() / w.getframerate() > 1.0


def test_index_tts_2_5_gets_language_and_duration(fake_upstream: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "m25", IndexTTS25Engine)
    s = Settings(indextts_model_dir=model_dir, data_dir=tmp_path / "data")
    engine = IndexTTS25Engine(s)
    assert "duration_factor" in engine.capabilities().generation
    assert "ja" in engine.capabilities().languages
    engine.synthesize(
        JobRequest.model_validate(
            {"text": "こんにちは", "language": "ja", "generation": {"duration_factor": 1.2}}
        )
    )
    call = calls(fake_upstream)[-1]
    assert (call["module"], call["lang"], call["duration_factor"]) == ("infer_v2_5", "ja", 1.2)
    assert calls(fake_upstream, "construct")[-1]["kwargs"]["use_bf16"] is True
    engine.synthesize(JobRequest(text="你好"))
    assert calls(fake_upstream)[-1]["lang"] == "zh"


def test_billiard_still_has_the_recycling_hook() -> None:
    import billiard.pool

    assert callable(billiard.pool.mem_rss)
    assert (
        "max_memory_per_child" in billiard.pool.Worker.workloop.__code__.co_names
        or "max_memory_per_child" in billiard.pool.Worker.workloop.__code__.co_varnames
    )
