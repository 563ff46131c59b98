"""Post-processing on real speech (eSpeak), every output decoded with soundfile: formats, rates,
channels, durations, loudness and true peak, trimming, and the stretch limit."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pyloudnorm
import pytest
import soundfile
import soxr
from pydantic import ValidationError

from common.audio.codec import decode, encode, to_mono
from common.audio.deliver import Delivered, deliver
from common.audio.wav import encode_wav
from common.schemas.job_request import JobRequest
from gpu_worker.engines.espeak import EspeakEngine

LINE = "A dubbed line must fit the time slot of the line it replaces."


@pytest.fixture(scope="module")
def speech() -> bytes:
    out = EspeakEngine().synthesize(JobRequest(text=LINE))
    return encode_wav(out.pcm16, out.sample_rate)


def run(wav: bytes, **options: Any) -> Delivered:
    return deliver(wav, JobRequest(text=LINE, **options), max_stretch=1.5)


def heard(out: Delivered) -> tuple[np.ndarray, int]:
    """The delivered file decoded by libsndfile, shaped (frames, channels)."""
    if out.format == "pcm_s16le":  # no header: the rate and channels are the job's
        data, rate = soundfile.read(
            io.BytesIO(out.data),
            dtype="float32",
            always_2d=True,
            format="RAW",
            subtype="PCM_16",
            endian="LITTLE",
            samplerate=out.sample_rate,
            channels=out.channels,
        )
    else:
        data, rate = soundfile.read(io.BytesIO(out.data), dtype="float32", always_2d=True)
    return data, int(rate)


def lufs(data: np.ndarray, rate: int) -> float:
    return float(pyloudnorm.Meter(rate).integrated_loudness(data))


def dbtp(data: np.ndarray, rate: int) -> float:
    up = soxr.resample(data, rate, rate * 4)
    return 20 * math.log10(float(np.max(np.abs(up))))


FORMATS = [
    ("wav", 16000, 2),
    ("flac", 44100, 1),
    ("flac", 22050, 2),
    ("mp3", 48000, 2),
    ("mp3", 16000, 1),
    ("opus", 24000, 2),
    ("opus", 48000, 1),
    ("opus", 8000, 1),
    ("pcm_s16le", 8000, 2),
    ("pcm_s16le", 48000, 1),
]


@pytest.mark.parametrize(("fmt", "rate", "channels"), FORMATS)
def test_each_format_decodes_at_the_asked_rate_channels_and_duration(
    speech: bytes, fmt: str, rate: int, channels: int
) -> None:
    out = run(speech, format=fmt, sample_rate=rate, channels=channels, target_duration_s=2.5)
    data, got_rate = heard(out)
    assert (got_rate, data.shape[1]) == (rate, channels)
    assert abs(data.shape[0] / rate - 2.5) <= 0.05  # ±2%
    assert (out.sample_rate, out.channels, out.format) == (rate, channels, fmt)
    if channels == 2:  # the speech is on both sides, not one side and silence
        assert np.max(np.abs(data[:, 0])) > 0.05 and np.max(np.abs(data[:, 1])) > 0.05


def test_raw_pcm_is_headerless_16_bit_samples(speech: bytes) -> None:
    wav = run(speech, format="wav", sample_rate=16000)
    raw = run(speech, format="pcm_s16le", sample_rate=16000)
    assert raw.data == wav.data[44:]  # the WAV's data chunk, nothing else


@pytest.mark.parametrize(
    ("target", "fmt", "rate", "channels"),
    [
        (-23.0, "wav", None, 1),
        (-16.0, "wav", 48000, 2),
        (-23.0, "mp3", 48000, 1),
        (-26.0, "opus", 48000, 2),
        (-30.0, "flac", 16000, 1),
    ],
)
def test_loudness_lands_within_half_a_lu_of_the_target_on_speech(
    speech: bytes, target: float, fmt: str, rate: int | None, channels: int
) -> None:
    before = lufs(decode(speech)[0], decode(speech)[1])
    assert abs(before - target) > 2  # the engine's own level would not pass by chance
    out = run(speech, format=fmt, sample_rate=rate, channels=channels, loudness=target)
    data, got_rate = heard(out)
    measured = lufs(data, got_rate)
    assert abs(measured - target) <= 0.5
    assert out.loudness is not None and abs(out.loudness - measured) <= 0.05
    assert out.peak is not None and out.peak <= -1.0 + 0.06
    assert abs(out.peak - dbtp(data, got_rate)) <= 0.2
    assert out.warnings == []


def test_a_true_peak_ceiling_wins_over_the_loudness_target_and_says_by_how_much(
    speech: bytes,
) -> None:
    out = run(speech, format="mp3", sample_rate=44100, loudness=-9, true_peak_db=-3)
    data, rate = heard(out)
    assert dbtp(data, rate) <= -3 + 0.2
    measured = lufs(data, rate)
    assert measured < -9 - 1  # quieter than asked: the ceiling won
    (warning,) = out.warnings
    assert "loudness" in warning and "-3 dBTP ceiling" in warning
    said = float(warning.rsplit("at ", 1)[1].split(" LUFS")[0])
    assert abs(said - measured) <= 0.5


def test_without_loudness_the_level_is_the_engines_and_still_reported(speech: bytes) -> None:
    out = run(speech, format="flac")
    data, rate = heard(out)
    engine_level = lufs(decode(speech)[0], decode(speech)[1])
    assert out.loudness is not None and abs(out.loudness - engine_level) <= 0.1
    assert abs(lufs(data, rate) - engine_level) <= 0.1


@pytest.mark.parametrize("target", [2.4, 2.8, 4.0])
def test_stretched_speech_lands_within_two_percent_of_the_target(
    speech: bytes, target: float
) -> None:
    natural = decode(speech)[0].shape[0] / decode(speech)[1]
    assert abs(natural - target) / target > 0.05  # there is a real stretch to do
    out = run(speech, format="mp3", sample_rate=24000, target_duration_s=target)
    data, rate = heard(out)
    assert abs(data.shape[0] / rate - target) <= 0.02 * target
    assert out.stretch is not None and abs(out.stretch - target / natural) <= 0.01
    assert out.warnings == []


def test_an_out_of_bounds_ratio_is_delivered_at_the_limit_and_reported(speech: bytes) -> None:
    natural = decode(speech)[0].shape[0] / decode(speech)[1]
    out = run(speech, format="wav", target_duration_s=1.0, max_stretch=1.5)
    data, rate = heard(out)
    got = data.shape[0] / rate
    assert abs(got - natural / 1.5) <= 0.02 * natural  # the closest it may come
    (warning,) = out.warnings
    assert "target_duration_s" in warning and f"{got - 1.0:.2f}s long" in warning


def test_trim_silence_cuts_leading_and_trailing_silence(speech: bytes) -> None:
    samples, rate = decode(speech)
    quiet = np.zeros(int(0.8 * rate), dtype=np.float32)
    padded = encode(np.concatenate([quiet, to_mono(samples), quiet]), rate, "wav")
    kept = heard(run(padded, format="wav"))[0].shape[0] / rate
    trimmed = heard(run(padded, format="wav", trim_silence=True))[0].shape[0] / rate
    assert abs(kept - (samples.shape[0] / rate + 1.6)) <= 0.001
    assert trimmed <= samples.shape[0] / rate + 0.03  # at most the 10 ms margins
    assert trimmed >= samples.shape[0] / rate - 0.3  # the speech itself is kept


def test_opus_without_a_rate_takes_the_next_rate_it_carries(speech: bytes) -> None:
    assert decode(speech)[1] == 22050  # eSpeak's: one Opus cannot carry
    out = run(speech, format="opus")
    assert heard(out)[1] == 24000 == out.sample_rate


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"format": "opus", "sample_rate": 44100}, "sample_rate"),
        ({"format": "opus", "sample_rate": 22050}, "sample_rate"),
        ({"format": "mp3", "sample_rate": 37000}, "sample_rate"),
        ({"format": "pcm_s16le", "channels": 3}, "channels"),
        ({"channels": 0}, "channels"),
        ({"format": "aiff"}, "format"),
        ({"loudness": -23, "energy": 1.5}, "energy"),
        ({"true_peak_db": -2}, "true_peak_db"),
        ({"loudness": 3}, "loudness"),
        ({"silence_threshold_db": -40}, "silence_threshold_db"),
    ],
)
def test_an_impossible_combination_is_refused_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        JobRequest(text=LINE, **options)
    assert field in str(caught.value)
