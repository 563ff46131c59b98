"""What happens to the engine's audio before it is delivered: silence trimmed, speed, fit to a
target duration, pitch, energy, sample rate, channels, loudness and format. Runs on the I/O
worker, off the GPU's path.

Libraries, not hand-written DSP: Rubber Band (through `pedalboard.time_stretch`) stretches time
with the pitch kept, `pedalboard.PitchShift` moves pitch, `soxr` resamples, `pyloudnorm`
measures loudness (`loudness.py`), libsndfile encodes FLAC and Ogg Opus, LAME (through
`pedalboard`) encodes MP3. Only gains and the trimming cut are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common import audio
from common.audio import Samples
from common.schemas import MP3_RATES, OPUS_RATES, JobRequest
from common.storage import CONTENT_TYPES
from gpu_worker import loudness


@dataclass
class Delivered:
    data: bytes
    format: str
    sample_rate: int
    channels: int
    duration_s: float
    stretch: float | None
    #: LUFS and dBTP of the delivered file; None where it is silent (or, for loudness,
    #: shorter than a 400 ms measuring block).
    loudness: float | None = None
    peak: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def fit(
    samples: Samples,
    rate: int,
    *,
    target_s: float | None,
    speed: float | None,
    max_stretch: float,
) -> tuple[Samples, float | None, list[str]]:
    """Stretch mono `samples` by `speed`, or to last `target_s` (the target wins when both are
    given: speed only sets the rate the target is then met from). Returns the samples, the
    ratio of the new duration to the old (None when untouched), and warnings."""
    if target_s is None and (speed is None or speed == 1.0):
        return samples, None, []
    length = audio.duration_s(samples, rate)
    wanted = target_s if target_s is not None else length / float(speed or 1.0)
    ratio = wanted / length
    warnings = []
    bounded = min(max(ratio, 1 / max_stretch), max_stretch)
    if bounded != ratio and target_s is not None:
        got = length * bounded
        warnings.append(
            f"target_duration_s: {target_s:g}s needs a stretch of {ratio:.2f}x, beyond the "
            f"limit of {max_stretch:g}x; delivered {got:.2f}s, {abs(got - target_s):.2f}s "
            f"{'short' if got < target_s else 'long'}"
        )
    out = _stretch(samples, rate, bounded)
    if bounded == ratio:  # land exactly on the target: Rubber Band is within a few frames
        out = _exact_length(out, round(wanted * rate))
    return out, round(audio.duration_s(out, rate) / length, 4), warnings


def _stretch(samples: Samples, rate: int, ratio: float) -> Samples:
    from pedalboard import time_stretch

    if math.isclose(ratio, 1.0, rel_tol=1e-4):
        return samples
    # pedalboard's factor is a speed: above 1 shortens.
    out = time_stretch(samples[np.newaxis, :], rate, stretch_factor=1.0 / ratio)
    return np.asarray(out[0], dtype=np.float32)


def _exact_length(samples: Samples, frames: int) -> Samples:
    if samples.shape[0] >= frames:
        return samples[:frames]
    return np.concatenate([samples, np.zeros(frames - samples.shape[0], dtype=np.float32)])


def _pitch(samples: Samples, rate: int, factor: float) -> Samples:
    from pedalboard import PitchShift

    shift = PitchShift(semitones=12 * math.log2(factor))
    return np.asarray(shift(samples[np.newaxis, :], rate)[0], dtype=np.float32)


def _energy(samples: Samples, factor: float) -> tuple[Samples, list[str]]:
    louder = samples * np.float32(factor)
    peak = float(np.max(np.abs(louder))) if louder.size else 0.0
    if peak <= 0.999:
        return louder, []
    gain_db = 20 * math.log10(factor * 0.999 / peak)
    limited = (louder * np.float32(0.999 / peak)).astype(np.float32)
    return limited, [f"energy: {factor:g}x would clip; limited to {gain_db:+.1f} dB"]


def _resample(samples: Samples, rate: int, to: int) -> Samples:
    import soxr

    return np.asarray(soxr.resample(samples, rate, to, quality="HQ"), dtype=np.float32)


def _trim(samples: Samples, rate: int, threshold_db: float) -> tuple[Samples, list[str]]:
    """Cut what precedes the first and follows the last sample above `threshold_db` dBFS,
    keeping a 10 ms margin either side so no onset is clipped."""
    loud = np.flatnonzero(np.abs(samples) > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return samples, [f"trim_silence: all of the audio is below {threshold_db:g} dBFS; kept"]
    margin = rate // 100
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin], []


def _carried_rate(rate: int, fmt: str) -> int:
    """The engine's rate where `fmt` carries it, else the next rate up that it does."""
    rates = {"mp3": MP3_RATES, "opus": OPUS_RATES}.get(fmt)
    if rates is None or rate in rates:
        return rate
    return min((r for r in rates if r >= rate), default=max(rates))


def _decoded(data: bytes, fmt: str, rate: int, channels: int) -> Samples:
    return audio.decode_raw(data, rate, channels) if fmt == "pcm_s16le" else audio.decode(data)[0]


def deliver(wav: bytes, request: JobRequest, *, max_stretch: float) -> Delivered:
    """The engine's WAV as the request asked for it. Loudness and peak are measured on the
    delivered file, decoded, so they are what a client measures."""
    samples, rate = audio.decode(wav)
    samples = audio.to_mono(samples)
    stretch: float | None = None
    warnings: list[str] = []
    if request.trim_silence:
        threshold = request.silence_threshold_db
        samples, warnings = _trim(
            samples, rate, audio.SILENCE_THRESHOLD_DB if threshold is None else threshold
        )
    if not request.segments:  # a timed script's segments were fitted one by one already
        samples, stretch, more = fit(
            samples,
            rate,
            target_s=request.target_duration_s,
            speed=request.speed,
            max_stretch=request.max_stretch or max_stretch,
        )
        warnings += more
    if request.pitch is not None and request.pitch != 1.0:
        samples = _pitch(samples, rate, request.pitch)
    if request.energy is not None and request.energy != 1.0:
        samples, more = _energy(samples, request.energy)
        warnings += more
    out_rate = request.sample_rate or _carried_rate(rate, request.format)
    if out_rate != rate:
        samples = _resample(samples, rate, out_rate)
    if request.segments and request.target_duration_s:  # a timed script: pad or cut the end
        samples = _exact_length(samples, round(request.target_duration_s * out_rate))
    channels = request.channels or 1
    if channels == 2:
        samples = np.ascontiguousarray(np.stack([samples, samples], axis=1))
    ceiling = request.true_peak_db
    ceiling = audio.TRUE_PEAK_CEILING_DB if ceiling is None else ceiling
    if request.loudness is not None:
        samples, more = loudness.normalise(
            samples, out_rate, target=request.loudness, ceiling=ceiling
        )
        warnings += more
    data = audio.encode(samples, out_rate, request.format)
    heard = _decoded(data, request.format, out_rate, channels)
    peak = loudness.true_peak(heard, out_rate)
    if request.loudness is not None and peak is not None and peak > ceiling + 0.05:
        # A lossy encoder's ringing can lift the peak past the ceiling: take it back once.
        samples = loudness.gain(samples, ceiling - peak - 0.05)
        data = audio.encode(samples, out_rate, request.format)
        heard = _decoded(data, request.format, out_rate, channels)
        peak = loudness.true_peak(heard, out_rate)
    lufs = loudness.integrated(heard, out_rate)
    return Delivered(
        data=data,
        format=request.format,
        sample_rate=out_rate,
        channels=channels,
        duration_s=round(audio.duration_s(samples, out_rate), 4),
        stretch=stretch,
        loudness=None if lufs is None else round(lufs, 2),
        peak=None if peak is None else round(peak, 2),
        warnings=warnings,
    )


def place(parts: list[tuple[Samples, float]], rate: int) -> Samples:
    """Mix mono parts, each starting at its time in seconds, into one track."""
    end = max((round(start * rate) + p.shape[0] for p, start in parts), default=0)
    track = np.zeros(end, dtype=np.float32)
    for p, start in parts:
        at = round(start * rate)
        track[at : at + p.shape[0]] += p
    return track
