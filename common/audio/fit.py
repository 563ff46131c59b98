"""Pure functions on mono float32 arrays that fit speech to its slot: trim, stretch (Rubber
Band through `pedalboard.time_stretch`, pitch kept), pitch, energy, resample (`soxr`), and the
placing of timed parts on one track.
"""

from __future__ import annotations

import math

import numpy as np

from common.audio import codec as audio
from common.audio.codec import Samples

#: How long the fade-out under a strict duration's cut lasts: long enough not to click,
#: short enough to keep the last syllable.
FADE_OUT_S = 0.015


def fit(
    samples: Samples,
    rate: int,
    *,
    target_s: float | None,
    speed: float | None,
    max_stretch: float,
    strict: bool = False,
    max_strict_stretch: float = 2.5,
) -> tuple[Samples, float | None, list[str]]:
    """Stretch mono `samples` by `speed`, or to last `target_s` (the target wins when both are
    given: speed only sets the rate the target is then met from). Returns the samples, the
    ratio of the new duration to the old (None when untouched), and warnings.

    `strict` (with a target): the result is exactly round(target_s * rate) samples, whatever
    the stretch needed. Too short at the `max_stretch` cap, the rest is silence at the end;
    too long, it is sped up further, up to `max_strict_stretch`, and what is still over is
    cut under a short fade-out. A warning says what strictness changed beyond the stretch."""
    if target_s is None and (speed is None or speed == 1.0):
        return samples, None, []
    length = audio.duration_s(samples, rate)
    wanted = target_s if target_s is not None else length / float(speed or 1.0)
    ratio = wanted / length
    warnings: list[str] = []
    bounded = min(max(ratio, 1 / max_stretch), max_stretch)
    if bounded != ratio and target_s is not None and strict:
        out, warnings = _fit_strictly(
            samples,
            rate,
            frames=round(target_s * rate),
            ratio=ratio,
            max_stretch=max_stretch,
            max_strict_stretch=max_strict_stretch,
        )
        return out, round(audio.duration_s(out, rate) / length, 4), warnings
    if bounded != ratio and target_s is not None:
        got = length * bounded
        warnings.append(
            f"target_duration_s: {target_s:g}s needs a stretch of {ratio:.2f}x, beyond the "
            f"limit of {max_stretch:g}x; delivered {got:.2f}s, {abs(got - target_s):.2f}s "
            f"{'short' if got < target_s else 'long'}"
        )
    out = stretch(samples, rate, bounded)
    if bounded == ratio:  # land exactly on the target: Rubber Band is within a few frames
        out = exact_length(out, round(wanted * rate))
    return out, round(audio.duration_s(out, rate) / length, 4), warnings


def _fit_strictly(
    samples: Samples,
    rate: int,
    *,
    frames: int,
    ratio: float,
    max_stretch: float,
    max_strict_stretch: float,
) -> tuple[Samples, list[str]]:
    # `ratio` is beyond `max_stretch` one way or the other.
    if ratio > max_stretch:  # slowing speech further would drag it: silence fills the slot
        out = stretch(samples, rate, max_stretch)
        padded = frames - out.shape[0]
        note = f"padded {padded / rate:.2f}s of silence (the {max_stretch:g}x cap left it short)"
        return exact_length(out, frames), [f"strict duration: {note}"] if padded > 0 else []
    # A request's own max_stretch may exceed the deployment's strict limit: never less than it.
    limit = max(max_stretch, max_strict_stretch)
    factor = min(1 / ratio, limit)
    out = stretch(samples, rate, 1 / factor)
    over = out.shape[0] - frames
    notes = []
    if factor > max_stretch:
        notes.append(f"stretched {factor:.2f}x faster (over the {max_stretch:g}x cap)")
    if factor < 1 / ratio and over > 0:  # beyond the limit; else Rubber Band's few frames
        notes.append(f"trimmed {over / rate:.2f}s")
    warnings = [f"strict duration: {' and '.join(notes)}"] if notes else []
    return fade_to(out, frames, rate), warnings


def fade_to(samples: Samples, frames: int, rate: int) -> Samples:
    if samples.shape[0] <= frames:
        return exact_length(samples, frames)
    # A cut mid-word steps to zero, which clicks; a short ramp down to it does not.
    out = samples[:frames].copy()
    n = min(frames, round(FADE_OUT_S * rate))
    out[frames - n :] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return out


def stretch(samples: Samples, rate: int, ratio: float) -> Samples:
    from pedalboard import time_stretch

    if math.isclose(ratio, 1.0, rel_tol=1e-4):
        return samples
    # pedalboard's factor is a speed: above 1 shortens.
    out = time_stretch(samples[np.newaxis, :], rate, stretch_factor=1.0 / ratio)
    return np.asarray(out[0], dtype=np.float32)


def exact_length(samples: Samples, frames: int) -> Samples:
    if samples.shape[0] >= frames:
        return samples[:frames]
    return np.concatenate([samples, np.zeros(frames - samples.shape[0], dtype=np.float32)])


def pitch(samples: Samples, rate: int, factor: float) -> Samples:
    from pedalboard import PitchShift

    shift = PitchShift(semitones=12 * math.log2(factor))
    return np.asarray(shift(samples[np.newaxis, :], rate)[0], dtype=np.float32)


def energy(samples: Samples, factor: float) -> tuple[Samples, list[str]]:
    louder = samples * np.float32(factor)
    peak = float(np.max(np.abs(louder))) if louder.size else 0.0
    if peak <= 0.999:
        return louder, []
    gain_db = 20 * math.log10(factor * 0.999 / peak)
    limited = (louder * np.float32(0.999 / peak)).astype(np.float32)
    return limited, [f"energy: {factor:g}x would clip; limited to {gain_db:+.1f} dB"]


def resample(samples: Samples, rate: int, to: int) -> Samples:
    import soxr

    return np.asarray(soxr.resample(samples, rate, to, quality="HQ"), dtype=np.float32)


def trim(samples: Samples, rate: int, threshold_db: float) -> tuple[Samples, list[str]]:
    """Cut what precedes the first and follows the last sample above `threshold_db` dBFS,
    keeping a 10 ms margin either side so no onset is clipped."""
    loud = np.flatnonzero(np.abs(samples) > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return samples, [f"trim_silence: all of the audio is below {threshold_db:g} dBFS; kept"]
    margin = rate // 100
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin], []


def place(parts: list[tuple[Samples, float]], rate: int) -> Samples:
    """Mix mono parts, each starting at its time in seconds, into one track."""
    end = max((round(start * rate) + p.shape[0] for p, start in parts), default=0)
    track = np.zeros(end, dtype=np.float32)
    for p, start in parts:
        at = round(start * rate)
        track[at : at + p.shape[0]] += p
    return track
