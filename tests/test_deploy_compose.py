"""docker-compose.remote.yml and the dubbing system's fragment: parsed, never run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.remote.yml"
FRAGMENT = REPO / "deploy" / "docker" / "dubbing-compose.remote.yml"
REQUIRED = {
    "TTS_API_KEY",
    "TTS_PUBLIC_URL",
    "REDIS_PASSWORD",
    "FLOWER_BASIC_AUTH",
    "TTS_S3_ACCESS_KEY_ID",
    "TTS_S3_SECRET_ACCESS_KEY",
    "TTSQ_MODELS_DIR",
}


def required_vars(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?[^}]+\}", text))


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_every_service_has_a_health_check_and_restarts() -> None:
    found = services()
    assert set(found) == {"redis", "api", "worker", "io", "flower", "minio"}
    for name, service in found.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert service["restart"] == "unless-stopped", name


def test_secrets_are_required_and_never_defaulted() -> None:
    text = COMPOSE.read_text()
    assert required_vars(text) >= REQUIRED
    for name in REQUIRED:  # no `${NAME:-default}` anywhere: a secret has no default
        assert f"${{{name}:-" not in text, name
    found = services()
    for name in ("api", "worker", "io", "flower"):
        env = found[name]["environment"]
        assert "${TTS_API_KEY:?" in env["TTS_API_KEY"]
        assert "${REDIS_PASSWORD:?" in env["TTS_REDIS_URL"]
        assert env["TTS_STORAGE"] == "s3", "local storage cannot be shared between containers"
        assert found[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "${FLOWER_BASIC_AUTH:?" in found["flower"]["environment"]["FLOWER_BASIC_AUTH"]


def test_the_gpu_is_reserved_for_the_worker_alone_and_minio_is_optional() -> None:
    found = services()
    devices = found["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert all("deploy" not in s for n, s in found.items() if n != "worker")
    assert found["minio"]["profiles"] == ["minio"]
    for name in ("redis", "flower", "minio"):  # published on loopback only
        assert all(p.startswith("127.0.0.1:") for p in found[name].get("ports", [])), name


def test_the_api_image_carries_no_torch() -> None:
    found = services()
    for name in ("api", "io", "flower"):
        assert found[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile.api"
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile.api").read_text()
    assert "[gpu]" not in dockerfile and "torch" in dockerfile  # the install is checked
    assert found["worker"]["build"]["dockerfile"] == "deploy/docker/Dockerfile.worker"
    assert "'.[gpu]'" in (REPO / "deploy" / "docker" / "Dockerfile.worker").read_text()


def test_the_dubbing_fragment_points_its_worker_at_the_remote_and_has_no_tts_service() -> None:
    fragment = yaml.safe_load(FRAGMENT.read_text())
    assert "tts_service" not in fragment["services"]
    env = fragment["services"]["worker"]["environment"]
    assert env["TTS_SERVICE_URL"].startswith("${TTS_SERVICE_URL:?")
    assert required_vars(FRAGMENT.read_text()) == {"TTS_SERVICE_URL", "TTS_API_KEY"}
