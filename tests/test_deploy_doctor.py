"""`ttsq doctor` fails, naming why, on a deployment that would lose jobs or cannot be reached."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import embedded_redis
from common.settings import Settings
from tests.support.servers import free_port
from ttsq import doctor

pytestmark = pytest.mark.integration


@pytest.fixture
def forgetful_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis without an append-only file that evicts keys when full."""
    port = free_port()
    proc = subprocess.Popen(
        [embedded_redis.server_binary(), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path), "--appendonly", "no", "--save", "",
         "--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = embedded_redis.url(port)
    embedded_redis.wait_ready(url, proc)
    yield url
    proc.kill()
    proc.wait(10)


def test_doctor_fails_a_redis_that_would_lose_jobs_and_a_url_that_does_not_answer(
    forgetful_redis: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(redis_url=forgetful_redis, data_dir=tmp_path / "data")
    code = doctor.doctor(settings, url=f"http://127.0.0.1:{free_port()}")
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()}
    assert code == 1
    assert lines["redis"].startswith("FAIL") and "appendonly is not yes" in lines["redis"]
    assert "allkeys-lru, not noeviction" in lines["redis"]
    assert lines["url"].startswith("FAIL")
    assert lines["workers"].startswith("FAIL") and "0 synthesis worker(s)" in lines["workers"]
    assert lines["storage"].startswith("ok") and "cannot be shared" in lines["storage"]
    assert lines["weights"].startswith("ok")


def test_doctor_fails_weights_that_are_missing(tmp_path: Path) -> None:
    settings = Settings(backend="index_tts2", indextts_model_dir=tmp_path / "empty")
    check = doctor.check_weights(settings)
    assert check.ok is False and str(tmp_path / "empty") in check.detail
