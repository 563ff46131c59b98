"""Strict duration: a job with a target lasts exactly that many samples at the delivered rate,
whatever the stretch needed (padded with silence, or sped up past the cap and cut under a
fade-out), and says what it did; without it the capped fit is as before."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
from pydantic import ValidationError

from common.audio.codec import encode, from_pcm16, pcm16
from common.audio.deliver import Delivered, deliver
from common.schemas.dropin import SynthesizeRequest, to_job
from common.schemas.job_request import AudioFormat, JobRequest, Segment
from common.schemas.workers import EngineCapabilities
from common.settings import Settings
from common.worker.delivery import UploadPolicy
from gpu_worker.engines.base import SynthesisOutput
from gpu_worker.speech import speak
from tests.support.stack import Stack

RATE = 22050  # eSpeak's rate
LINE = "A dubbed line must fit the time slot of the line it replaces."  # eSpeak: about 3.1 s


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    """A sustained 220 Hz tone at half scale, loud to its last sample: a hard cut would click."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def run(seconds: float, server_strict: bool = True, **options: Any) -> Delivered:
    wav = encode(tone(seconds), RATE, "wav")
    request = JobRequest(text="line", **{"format": "wav", "max_stretch": 1.5, **options})
    return deliver(wav, request, max_stretch=1.5, strict_duration=server_strict)


def frames(out: Delivered) -> np.ndarray:
    data, rate = soundfile.read(io.BytesIO(out.data), dtype="float32")
    assert rate == out.sample_rate
    return np.asarray(data)


def test_too_short_even_at_the_cap_is_padded_with_silence_to_the_exact_length() -> None:
    out = run(1.0, target_duration_s=2.0)
    data = frames(out)
    assert data.shape[0] == 2 * RATE
    # Stretched 1.5x to 1.5 s (the cap), then 0.5 s of silence.
    assert np.max(np.abs(data[round(1.52 * RATE) :])) == 0.0
    assert np.max(np.abs(data[: round(1.45 * RATE)])) > 0.3
    assert out.warnings == ["strict duration: padded 0.50s of silence (the 1.5x cap left it short)"]


def test_far_too_long_is_sped_up_past_the_cap_then_trimmed_under_a_fade() -> None:
    out = run(3.0, target_duration_s=1.0)  # needs 3x; the strict limit is 2.5x
    data = frames(out)
    assert data.shape[0] == RATE
    assert out.warnings == [
        "strict duration: stretched 2.50x faster (over the 1.5x cap) and trimmed 0.20s"
    ]
    # The tone is loud right up to the cut: the fade takes it down to nothing, no click.
    assert np.max(np.abs(data[-round(0.05 * RATE) : -round(0.02 * RATE)])) > 0.3
    assert np.max(np.abs(data[-round(0.001 * RATE) :])) < 0.05
    assert abs(data[-1]) < 1e-3
    # No step anywhere near the end steeper than the tone's own.
    assert np.max(np.abs(np.diff(data[-round(0.05 * RATE) :]))) < 0.04


def test_too_long_within_the_strict_limit_is_only_sped_up() -> None:
    out = run(2.0, target_duration_s=1.0)
    assert frames(out).shape[0] == RATE
    assert out.warnings == ["strict duration: stretched 2.00x faster (over the 1.5x cap)"]


@pytest.mark.parametrize(
    ("fmt", "rate", "target"), [("wav", 44100, 1.2345), ("wav", 16000, 0.9), ("flac", 48000, 1.1)]
)
def test_within_the_cap_the_delivered_file_is_exactly_the_target_at_its_rate(
    fmt: AudioFormat, rate: int, target: float
) -> None:
    wav = encode(tone(1.0), RATE, "wav")
    request = JobRequest(
        text="line", format=fmt, sample_rate=rate, target_duration_s=target, strict_duration=True
    )
    out = deliver(wav, request, max_stretch=1.5)
    assert frames(out).shape[0] == round(target * rate)
    assert out.warnings == []


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
def test_raw_pcm_past_the_cap_is_exactly_the_target_at_its_rate(rate: int) -> None:
    out = run(3.0, format="pcm_s16le", sample_rate=rate, target_duration_s=0.77)
    assert len(out.data) == 2 * round(0.77 * rate)
    assert abs(out.duration_s - 0.77) < 1 / rate


def test_the_servers_setting_holds_unless_the_job_says_otherwise() -> None:
    strict = run(1.0, server_strict=True, target_duration_s=2.0)
    assert frames(strict).shape[0] == 2 * RATE
    loose = run(1.0, server_strict=False, target_duration_s=2.0)
    assert frames(loose).shape[0] < 1.6 * RATE  # the capped fit, as without strictness
    assert loose.warnings[0].startswith("target_duration_s: 2s needs a stretch of 2.00x")
    opted_out = run(1.0, server_strict=True, target_duration_s=2.0, strict_duration=False)
    assert frames(opted_out).shape[0] == frames(loose).shape[0]
    opted_in = run(1.0, server_strict=False, target_duration_s=2.0, strict_duration=True)
    assert frames(opted_in).shape[0] == 2 * RATE


def test_without_a_target_strictness_changes_nothing() -> None:
    out = run(1.0, strict_duration=True)
    assert frames(out).shape[0] == RATE
    assert out.warnings == [] and out.stretch is None


class ToneEngine:
    """Says every line as 1.5 s of tone."""

    name = "tone"
    device = "cpu"
    model_version = "1"

    def capabilities(self) -> EngineCapabilities:
        raise NotImplementedError

    def warmup(self) -> None: ...

    def synthesize(self, request: JobRequest) -> SynthesisOutput:
        return SynthesisOutput(pcm16(tone(1.5)), RATE)


SCRIPT = [
    Segment(text="first", target_duration_s=0.5, start_s=0.0),  # needs 3x: capped at 2.5x
    Segment(text="second", target_duration_s=1.0, start_s=1.0),  # 1.5x: within the cap
]


def test_a_strict_timed_script_puts_each_segment_exactly_in_its_slot() -> None:
    request = JobRequest(text="script", segments=SCRIPT)
    out = speak(request, ToneEngine(), max_stretch=1.5, strict_duration=True)
    track = from_pcm16(out.pcm16)
    assert track.shape[0] == 2 * RATE  # the second slot ends at 2.0 s, exactly
    assert np.max(np.abs(track[round(0.5 * RATE) : RATE])) == 0.0  # the gap stays silent
    assert np.max(np.abs(track[round(0.45 * RATE) : round(0.48 * RATE)])) > 0.3
    assert np.max(np.abs(track[round(0.499 * RATE) : round(0.5 * RATE)])) < 0.05  # faded
    assert out.warnings == [
        "segments[0]: strict duration: stretched 2.50x faster (over the 1.5x cap) and trimmed 0.10s"
    ]


def test_a_timed_script_without_strictness_lets_a_long_segment_overrun_its_slot() -> None:
    request = JobRequest(text="script", segments=SCRIPT, strict_duration=False)
    out = speak(request, ToneEngine(), max_stretch=1.5, strict_duration=True)
    track = from_pcm16(out.pcm16)
    assert np.max(np.abs(track[round(0.5 * RATE) : round(0.95 * RATE)])) > 0.3
    assert out.warnings[0].startswith("segments[0]: target_duration_s: 0.5s needs")


def test_strict_duration_is_read_from_either_environment_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().strict_duration is False
    assert Settings(strict_duration=True).strict_duration is True
    monkeypatch.setenv("STRICT_DURATION", "true")
    assert Settings().strict_duration is True
    monkeypatch.delenv("STRICT_DURATION")
    monkeypatch.setenv("TTS_STRICT_DURATION", "1")
    monkeypatch.setenv("TTS_MAX_STRICT_STRETCH", "3")
    settings = Settings()
    assert (settings.strict_duration, settings.max_strict_stretch) == (True, 3.0)
    # The I/O worker's fit gets both.
    policy = UploadPolicy.of(settings)
    assert (policy.strict_duration, policy.max_strict_stretch) == (True, 3.0)


def test_a_strict_limit_below_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_strict_stretch"):
        Settings(max_strict_stretch=0.9)


def test_the_dropin_route_passes_strict_duration_through() -> None:
    body = SynthesizeRequest(text="line", target_duration_ms=800, strict_duration=True)
    assert to_job(body).strict_duration is True
    assert to_job(SynthesizeRequest(text="line")).strict_duration is None


@pytest.mark.integration
def test_a_strict_job_downloads_as_exactly_the_target_in_frames(stack: Stack) -> None:
    body: dict[str, Any] = {"format": "wav", "sample_rate": 16000, "target_duration_s": 0.8}
    job = stack.wait_end(
        stack.submit(text=LINE, strict_duration=True, **body)["id"],
        timeout=60,
    )
    assert job["status"] == "succeeded", job
    r = httpx.get(job["audio"]["url"], timeout=10)
    info = soundfile.info(io.BytesIO(r.content))
    assert (info.samplerate, info.frames) == (16000, round(0.8 * 16000))
    assert job["audio"]["duration_s"] == 0.8
    (warning,) = job["warnings"]  # 3.1 s into 0.8 s: sped up 2.5x and the rest cut
    assert warning.startswith("strict duration: stretched 2.50x faster") and "trimmed" in warning
