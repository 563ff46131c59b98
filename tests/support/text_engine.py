"""A test engine for tools that send only text (`ttsq dub`): faults scripted in the text.

A text holding `REJECT_MARK` is refused, as `metadata.script = "reject"` is; every call takes
TTS_TEST_ENGINE_DELAY_S first, so a run lasts long enough to be stopped halfway.
"""

from __future__ import annotations

import os
import time

from common.errors import EngineInputError
from common.schemas.job_request import JobRequest
from gpu_worker.engines.base import SynthesisOutput
from tests.support.engines import ScriptedEngine

REJECT_MARK = "Unspeakable"


class TextScriptedEngine(ScriptedEngine):
    name = "text-scripted-espeak"

    def _synthesize(self, request: JobRequest) -> SynthesisOutput:
        time.sleep(float(os.environ.get("TTS_TEST_ENGINE_DELAY_S", "0")))  # the GPU's time
        if REJECT_MARK in request.text:
            raise EngineInputError("the engine refuses this text (scripted)")
        return super()._synthesize(request)
