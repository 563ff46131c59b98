"""A test engine for tools that send only text (`ttsq dub`): faults scripted in the text.

A text holding `REJECT_MARK` is refused, as `metadata.script = "reject"` is; every call takes
TTS_TEST_ENGINE_DELAY_S first. While the file `HOLD_FILE` in the ledger dir names a number of
calls that the engine has already made (lines of `engine-spans`), every further call waits (at
most 60 s) for the file to go: a test stops a run halfway with no race against the engine.
"""

from __future__ import annotations

import os
import time

from common.errors import EngineInputError
from common.schemas.job_request import JobRequest
from gpu_worker.engines.base import SynthesisOutput
from tests.support.engines import ScriptedEngine, calls

REJECT_MARK = "Unspeakable"
HOLD_FILE = "hold-after-calls"


class TextScriptedEngine(ScriptedEngine):
    name = "text-scripted-espeak"

    def _synthesize(self, request: JobRequest) -> SynthesisOutput:
        self._wait_while_held()
        time.sleep(float(os.environ.get("TTS_TEST_ENGINE_DELAY_S", "0")))  # the GPU's time
        if REJECT_MARK in request.text:
            raise EngineInputError("the engine refuses this text (scripted)")
        return super()._synthesize(request)

    def _wait_while_held(self) -> None:
        hold = self.ledger / HOLD_FILE
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                after = int(hold.read_text())
            except (FileNotFoundError, ValueError):
                return
            if calls(self.ledger, "engine-spans") < after:
                return
            time.sleep(0.02)
