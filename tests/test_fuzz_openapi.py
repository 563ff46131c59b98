"""Schemathesis against the live OpenAPI document: no 5xx, no response that breaks the schema."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.stack import KEYS, Stack

pytestmark = pytest.mark.integration


def test_fuzzing_the_live_api_finds_no_server_error(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(TTS_MAX_WAIT_S="1", TTS_SYNTHESIZE_WAIT_S="1").start()
    st = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{stack.url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--header",
            f"X-Api-Key: {KEYS['alice']}",
            "--max-examples",
            "30",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "20",
            "--generation-deterministic",
            "--continue-on-failure",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "5xx" not in report.lower() or "0 5xx" in report.lower()
