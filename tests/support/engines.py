"""A test engine: real eSpeak speech, plus faults a test can script through the request.

`metadata.probe` names a ledger file under TTS_TEST_LEDGER_DIR; every call of `synthesize`
appends a line to it, so a test can count how many times a job reached the engine.
`metadata.script` picks a behaviour: `sleep:<s>`, `sleep_once:<s>`, `crash` (SIGKILL this process),
`crash_once` (only on the first call for this probe), `transient`, `transient_once`, `reject`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from common.errors import EngineInputError, TransientError
from common.schemas import JobRequest
from common.settings import Settings
from gpu_worker.engines.base import SynthesisOutput
from gpu_worker.engines.espeak import EspeakEngine


class ScriptedEngine(EspeakEngine):
    name = "scripted-espeak"

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self.ledger = Path(os.environ.get("TTS_TEST_LEDGER_DIR", "."))

    def memory_mb(self) -> float:
        """What a GPU engine reports; TTS_TEST_FAKE_GPU_MB stands in for torch's figure."""
        return float(os.environ.get("TTS_TEST_FAKE_GPU_MB", "0"))

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        probe = request.metadata.get("probe")
        calls = 0
        if probe:
            path = self.ledger / probe
            with open(path, "a") as f:
                f.write("call\n")
            calls = len(path.read_text().splitlines())
        script = request.metadata.get("script", "")
        if script.startswith("sleep:") or (script.startswith("sleep_once:") and calls <= 1):
            time.sleep(float(script.split(":", 1)[1]))
        elif script == "crash" or (script == "crash_once" and calls <= 1):
            os.kill(os.getpid(), signal.SIGKILL)
        elif script == "transient" or (script == "transient_once" and calls <= 1):
            raise TransientError("CUDA out of memory (scripted)")
        elif script == "reject":
            raise EngineInputError("the engine refuses this text (scripted)")
        return super().synthesize(request)


def calls(ledger_dir: Path, probe: str) -> int:
    path = ledger_dir / probe
    return len(path.read_text().splitlines()) if path.exists() else 0
