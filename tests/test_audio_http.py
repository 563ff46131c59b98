"""Audio options through the whole stack (API, synthesis worker on eSpeak, I/O worker, S3):
the file a client downloads is what the job asked for, measured by decoding it."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pyloudnorm
import pytest
import soundfile

from tests.support.stack import Stack

pytestmark = pytest.mark.integration

LINE = "A dubbed line must fit the time slot of the line it replaces."


def fetched(stack: Stack, **options: Any) -> tuple[dict[str, Any], bytes]:
    job = stack.wait_end(stack.submit(text=LINE, **options)["id"], timeout=60)
    assert job["status"] == "succeeded", job
    r = httpx.get(job["audio"]["url"], timeout=10)
    assert r.status_code == 200
    return job, r.content


def test_mp3_at_48k_at_minus_23_lufs_fitted_to_2_4_s_is_exactly_that(stack: Stack) -> None:
    job, data = fetched(stack, format="mp3", sample_rate=48000, loudness=-23, target_duration_s=2.4)
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    info = soundfile.info(io.BytesIO(data))
    assert (info.format, rate, samples.shape[1]) == ("MP3", 48000, 1)
    assert abs(samples.shape[0] / rate - 2.4) <= 0.02 * 2.4
    measured = pyloudnorm.Meter(rate).integrated_loudness(samples)
    assert abs(measured - (-23)) <= 0.5
    audio = job["audio"]
    assert (audio["format"], audio["sample_rate"], audio["channels"]) == ("mp3", 48000, 1)
    assert abs(audio["duration_s"] - 2.4) <= 0.001
    assert abs(audio["loudness"] - measured) <= 0.05
    assert audio["peak"] <= -1.0 + 0.06
    assert audio["stretch"] < 1  # eSpeak says it in about 3.1 s
    assert job["warnings"] == []


def test_stereo_raw_pcm_downloads_as_headerless_samples(stack: Stack) -> None:
    job, data = fetched(stack, format="pcm_s16le", sample_rate=16000, channels=2)
    samples, _ = soundfile.read(
        io.BytesIO(data),
        format="RAW",
        subtype="PCM_16",
        endian="LITTLE",
        samplerate=16000,
        channels=2,
        always_2d=True,
    )
    assert samples.shape[1] == 2
    assert abs(samples.shape[0] / 16000 - job["audio"]["duration_s"]) <= 0.001
    assert job["audio"]["url"].split("?")[0].endswith(".pcm_s16le")


def test_an_unreachable_target_is_delivered_at_the_limit_with_a_warning(stack: Stack) -> None:
    job, data = fetched(stack, format="opus", target_duration_s=0.8, max_stretch=1.5)
    samples, rate = soundfile.read(io.BytesIO(data), always_2d=True)
    assert rate == 24000  # eSpeak's 22050 Hz is not an Opus rate: the next one up
    assert samples.shape[0] / rate > 1.5  # capped at 1.5x faster, not squeezed into 0.8 s
    (warning,) = job["warnings"]
    assert warning.startswith("target_duration_s: 0.8s needs a stretch of")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "opus", "sample_rate": 44100}, "sample_rate: Ogg Opus carries"),
        ({"format": "pcm_s16le", "channels": 3}, "channels:"),
        ({"format": "flac", "loudness": 0}, "loudness:"),
        ({"loudness": -23, "energy": 2}, "energy: give loudness or energy"),
        ({"true_peak_db": -2}, "true_peak_db:"),
    ],
)
def test_an_impossible_combination_is_a_422_naming_the_field(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs", json={"text": LINE, **body}, headers=stack.headers("dave")
    )
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["message"]


def test_the_engine_route_lists_the_formats_and_ranges(stack: Stack) -> None:
    audio = httpx.get(f"{stack.url}/v1/engine", headers=stack.headers()).json()["audio"]
    assert audio["formats"] == ["wav", "flac", "mp3", "opus", "pcm_s16le"]
    assert audio["format_rates"]["opus"] == [8000, 12000, 16000, 24000, 48000]
    assert audio["ranges"]["sample_rate"] == {"min": 8000, "max": 48000}
    assert audio["ranges"]["channels"] == {"min": 1, "max": 2}
    assert audio["defaults"]["true_peak_db"] == -1.0
