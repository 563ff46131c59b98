"""The preflight's call on the Qwen emotion model (`qwen0.6bemo4-merge/`): required exactly when
building the installed version would load it, read from its source without importing it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.errors import EngineLoadError
from common.settings import Settings
from gpu_worker.engines import indextts_layout as layout
from gpu_worker.engines.indextts import IndexTTS2Engine
from tests.test_indextts_engine import install_module, make_model_dir

UPSTREAM = """
raise RuntimeError("the preflight imported upstream")  # it must only read the source


class IndexTTS2:
    def __init__(self, cfg_path, model_dir, use_fp16=False, device=None{extra}):
        pass
"""


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path for a synthetic `indextts` package; write `infer_v2.py` into it."""
    root = tmp_path / "site"
    (root / "indextts").mkdir(parents=True)
    (root / "indextts" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    forget_indextts()
    yield root / "indextts" / "infer_v2.py"
    forget_indextts()


def forget_indextts() -> None:
    for name in [m for m in sys.modules if m == "indextts" or m.startswith("indextts.")]:
        del sys.modules[name]


def without_qwen(tmp_path: Path, use_qwen_emo: bool | None) -> Settings:
    model_dir = make_model_dir(tmp_path / "model")
    (model_dir / layout.QWEN_DIR).rmdir()
    return Settings(indextts_model_dir=model_dir, indextts_use_qwen_emo=use_qwen_emo)


def test_a_missing_qwen_dir_is_refused_when_upstreams_default_loads_it(
    upstream: Path, tmp_path: Path
) -> None:
    upstream.write_text(UPSTREAM.format(extra=", use_qwen_emo=True, aux_paths=None"))
    with pytest.raises(EngineLoadError) as err:
        IndexTTS2Engine.preflight(without_qwen(tmp_path, None))
    message = err.value.message
    assert "lacks qwen0.6bemo4-merge/;" in message
    assert "set TTS_INDEXTTS_USE_QWEN_EMO=false to start without qwen0.6bemo4-merge/" in message
    assert "indextts.infer_v2" not in sys.modules


def test_a_missing_qwen_dir_passes_when_the_setting_turns_it_off(
    upstream: Path, tmp_path: Path
) -> None:
    upstream.write_text(UPSTREAM.format(extra=", use_qwen_emo=True, aux_paths=None"))
    IndexTTS2Engine.preflight(without_qwen(tmp_path, False))


def test_a_missing_qwen_dir_passes_when_the_constructor_defaults_it_off(
    upstream: Path, tmp_path: Path
) -> None:
    upstream.write_text(UPSTREAM.format(extra=", *, use_qwen_emo=False, aux_paths=None"))
    IndexTTS2Engine.preflight(without_qwen(tmp_path, None))


@pytest.mark.parametrize("use_qwen_emo", [None, False])
def test_a_version_without_the_switch_always_needs_the_qwen_dir(
    upstream: Path, tmp_path: Path, use_qwen_emo: bool | None
) -> None:
    upstream.write_text(UPSTREAM.format(extra=", aux_paths=None"))
    with pytest.raises(EngineLoadError) as err:
        IndexTTS2Engine.preflight(without_qwen(tmp_path, use_qwen_emo))
    message = err.value.message
    assert "lacks qwen0.6bemo4-merge/;" in message
    assert "has no `use_qwen_emo`, so it always loads qwen0.6bemo4-merge/" in message
    assert "TTS_INDEXTTS_USE_QWEN_EMO" not in message


def imported(monkeypatch: pytest.MonkeyPatch, default: bool) -> None:
    class Imported:
        def __init__(
            self, cfg_path: str, model_dir: str, use_qwen_emo: bool = default, aux_paths: Any = None
        ) -> None:
            pass

    install_module(monkeypatch, Imported)


def test_an_imported_upstreams_default_decides_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    imported(monkeypatch, default=False)
    IndexTTS2Engine.preflight(without_qwen(tmp_path / "off", None))
    imported(monkeypatch, default=True)
    with pytest.raises(EngineLoadError, match=r"TTS_INDEXTTS_USE_QWEN_EMO=false"):
        IndexTTS2Engine.preflight(without_qwen(tmp_path / "on", None))
