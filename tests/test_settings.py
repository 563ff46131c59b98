from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.settings import Settings, SettingsError


def test_original_design_environment_names_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTS_HOST", "0.0.0.0")
    monkeypatch.setenv("TTS_PORT", "8001")
    monkeypatch.setenv("TTS_API_KEY", "secret")
    monkeypatch.setenv("TTS_BACKEND", "index_tts2")
    monkeypatch.setenv("INDEXTTS_MODEL_DIR", "/models/IndexTTS-2")
    monkeypatch.setenv("INDEXTTS_DEVICE", "cuda:0")
    monkeypatch.setenv("INDEXTTS_USE_FP16", "false")
    s = Settings()
    assert (s.host, s.port, s.backend) == ("0.0.0.0", 8001, "index_tts2")
    assert s.indextts_model_dir == Path("/models/IndexTTS-2")
    assert s.indextts_device == "cuda:0" and s.indextts_use_fp16 is False
    assert s.parsed_api_keys() == {"secret": "default"}


def test_several_keys_as_name_key_pairs() -> None:
    s = Settings(api_keys="dubber:k1, ops:k2", api_key="k0")
    assert s.parsed_api_keys() == {"k0": "default", "k1": "dubber", "k2": "ops"}


def test_malformed_key_pairs_fail_at_start() -> None:
    with pytest.raises(ValidationError, match="name:key"):
        Settings(api_keys="just-a-key")


def test_listening_beyond_loopback_without_a_key_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match="refusing"):
        Settings(host="0.0.0.0").require_safe_exposure()


def test_open_on_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    Settings(host="127.0.0.1").require_safe_exposure()
    assert "open" in caplog.text


def test_with_a_key_any_address_is_fine() -> None:
    Settings(host="0.0.0.0", api_key="k").require_safe_exposure()


def test_heartbeat_ttl_must_exceed_interval() -> None:
    with pytest.raises(ValidationError, match="HEARTBEAT_TTL"):
        Settings(heartbeat_interval_s=5, heartbeat_ttl_s=5)
