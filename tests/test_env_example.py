""".env.example names every setting of `common.settings.Settings`, with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from common.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
#: Read by the client side (the dubbing worker, `ttsq say/batch/status`), not by Settings.
CLIENT_ONLY = {"TTS_SERVICE_URL"}
LINE = re.compile(r"^# ?([A-Z][A-Z0-9_]*)=(.*)$")


def example() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        match = LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def env_names(name: str) -> list[str]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"TTS_{name.upper()}"]


def written(default: object) -> str:
    if default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def test_every_setting_has_a_line_and_every_line_is_a_setting() -> None:
    lines = example()
    missing = [env_names(n)[0] for n in Settings.model_fields if not set(env_names(n)) & set(lines)]
    assert not missing, f".env.example lacks these settings; add a line for each: {missing}"
    known = {env for n in Settings.model_fields for env in env_names(n)} | CLIENT_ONLY
    unknown = sorted(set(lines) - known)
    assert not unknown, f".env.example names settings that do not exist; remove: {unknown}"
    assert set(lines) >= CLIENT_ONLY and "TTS_API_KEY" in lines


def test_every_line_shows_the_settings_real_default() -> None:
    lines = example()
    wrong = {}
    for name, field in Settings.model_fields.items():
        env = next(e for e in env_names(name) if e in lines)
        if lines[env] != written(field.default):
            wrong[env] = f"says {lines[env]!r}, the default is {written(field.default)!r}"
    assert not wrong, f".env.example has stale defaults: {wrong}"
