"""A test engine: real eSpeak speech, plus faults a test can script through the request.

`metadata.probe` names a ledger file under TTS_TEST_LEDGER_DIR; every call of `synthesize`
appends a line to it, so a test can count how many times a job reached the engine.
`metadata.script` picks a behaviour: `sleep:<s>`, `sleep_once:<s>`, `crash` (SIGKILL this process),
`crash_once` (only on the first call for this probe), `transient`, `transient_once`, `reject`,
`hold:<name>` (wait, at most 60 s, until the test creates the file <name> in the ledger dir).
Every call also appends its start and end (wall-clock seconds) to `engine-spans` in the ledger
dir: the benchmarks' measure of when the engine (the GPU) was busy.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from common.errors import EngineInputError, TransientError
from common.schemas.job_request import JobRequest
from common.schemas.workers import EngineCapabilities
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
        started = time.time()
        out = self._synthesize(request)
        with open(self.ledger / "engine-spans", "a") as f:
            f.write(f"{started} {time.time()}\n")
        return out

    def _synthesize(self, request: JobRequest) -> SynthesisOutput:
        probe = request.metadata.get("probe")
        calls = 0
        if probe:
            path = self.ledger / probe
            with open(path, "a") as f:
                f.write("call\n")
            calls = len(path.read_text().splitlines())
        script = request.metadata.get("script", "")
        if script.startswith("sleep:") or (script.startswith("sleep_once:") and calls <= 1):
            time.sleep(float(script.split(":", 1)[1]))  # the GPU's time on the job
        elif script.startswith("hold:"):
            release = self.ledger / script.split(":", 1)[1]
            deadline = time.monotonic() + 60
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
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


class BrokenEngine(ScriptedEngine):
    """An engine that cannot start: TTS_TEST_BROKEN=build raises from the constructor (as a
    model dir with a missing file does), =warmup raises CUDA OOM while warming up."""

    def __init__(self, settings: Settings | None = None) -> None:
        if os.environ.get("TTS_TEST_BROKEN", "build") == "build":
            raise RuntimeError("scripted: the model could not be built")
        super().__init__(settings)

    def warmup(self) -> None:
        raise TransientError("CUDA out of memory (scripted, during warm-up)")


class VoiceDirEngine(ScriptedEngine):
    """Lists the voices in `<data dir>/voices` (read live, as IndexTTS2's are) and speaks any
    of them with eSpeak's default voice."""

    name = "voice-dir-espeak"

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self.voices_dir = (settings or Settings()).data_dir / "voices"

    def capabilities(self) -> EngineCapabilities:
        caps = super().capabilities()
        caps.voices = sorted(p.stem for p in self.voices_dir.glob("*.wav"))
        return caps

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        if request.voice is not None and request.voice not in self.capabilities().voices:
            raise EngineInputError(f"voice: no voice {request.voice!r} on this worker")
        return super().synthesize(request.model_copy(update={"voice": None}))
