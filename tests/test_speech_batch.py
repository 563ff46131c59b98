"""Several jobs through a batching engine (`gpu_worker/speech.py`): their engine calls laid end
to end, `batch` at a time, each job given its own audio or its own error. The real IndexTTS2
batch is tested in tests/test_real_indextts.py."""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import EngineInputError
from common.schemas.job_request import JobRequest, Segment
from common.schemas.workers import EngineCapabilities
from gpu_worker.engines.base import ProgressListener, SynthesisOutput
from gpu_worker.speech import speak_many

RATE = 8000


class BatchEngine:
    """A line is a tenth of a second of silence per word; "bad" is refused."""

    name, device, model_version = "batch", "cpu", "1"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def capabilities(self) -> EngineCapabilities:
        raise NotImplementedError

    def warmup(self) -> None: ...

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        (out,) = self.synthesize_many([request], [None])
        if isinstance(out, Exception):
            raise out
        return out

    def synthesize_many(
        self, requests: Sequence[JobRequest], listeners: Sequence[ProgressListener | None]
    ) -> list[SynthesisOutput | Exception]:
        self.batches.append([r.text for r in requests])
        return [
            EngineInputError("text: refused")
            if r.text == "bad"
            else SynthesisOutput(b"\0\0" * (RATE // 10) * len(r.text.split()), RATE)
            for r in requests
        ]


def script(*lines: str) -> JobRequest:
    segments = [
        Segment(text=t, start_s=float(i), target_duration_s=None) for i, t in enumerate(lines)
    ]
    return JobRequest(text=" ".join(lines), segments=segments)


def test_jobs_and_script_lines_share_batches_and_each_job_gets_its_own_answer() -> None:
    engine = BatchEngine()
    heard: list[tuple[int, int]] = []
    outs = speak_many(
        [
            JobRequest(text="one two"),
            script("a", "b c", "d"),
            script("e", "bad"),
            JobRequest(text="x"),
        ],
        engine,
        batch=3,
        max_stretch=1.5,
        progress=[None, lambda done, total: heard.append((done, total)), None, None],
    )
    assert engine.batches == [["one two", "a", "b c"], ["d", "e", "bad"], ["x"]]
    first, placed, failed, last = outs
    assert isinstance(first, SynthesisOutput) and first.duration_s == 0.2
    # Placed at its segments' starts (0, 1, 2 s), the last lasting 0.1 s.
    assert isinstance(placed, SynthesisOutput) and placed.duration_s == 2.1
    assert isinstance(failed, EngineInputError)  # only the job with the refused line
    assert isinstance(last, SynthesisOutput) and last.duration_s == 0.1
    assert heard == [(0, 3), (2, 3), (3, 3)]  # the script's lines done, batch by batch
