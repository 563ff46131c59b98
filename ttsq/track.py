"""One track out of many lines: each placed at its start, silence elsewhere, then the whole
brought to a loudness (ITU-R BS.1770 integrated, through `pyloudnorm`) under a peak ceiling.

The worker's own loudness code lives in `gpu_worker/`, which a client never imports; this is
the same measure, applied once to the finished track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.audio import Samples, to_mono

#: BS.1770 gates 400 ms blocks: anything shorter has no integrated loudness.
BLOCK_S = 0.4
#: EBU R128's ceiling: the track's true peak (4x oversampled) stays at or below this.
PEAK_CEILING_DB = -1.0


@dataclass(frozen=True)
class Placed:
    """A line's audio, to start at `start` and last at most until `end` (frames)."""

    start: int
    end: int
    samples: Samples


def frame(ms: int, rate: int) -> int:
    return round(ms * rate / 1000)


def resampled(samples: Samples, rate: int, to_rate: int) -> Samples:
    import soxr

    mono = to_mono(samples)
    if rate == to_rate:
        return mono
    return np.asarray(soxr.resample(mono, rate, to_rate, quality="HQ"), dtype=np.float32)


def place(lines: list[Placed], frames: int) -> Samples:
    """`frames` of silence with each line added at its start, cut at its slot's end (lines of
    overlapping cues are mixed)."""
    track = np.zeros(frames, dtype=np.float32)
    for line in lines:
        end = min(line.end, frames, line.start + line.samples.shape[0])
        if end > line.start:
            track[line.start : end] += line.samples[: end - line.start]
    return track


def loudness(samples: Samples, rate: int) -> float | None:
    """Integrated LUFS; None when shorter than a block or silent."""
    import pyloudnorm

    if samples.shape[0] < BLOCK_S * rate:
        return None
    value = float(pyloudnorm.Meter(rate).integrated_loudness(samples))
    return value if math.isfinite(value) else None


def true_peak_db(samples: Samples, rate: int) -> float | None:
    import soxr

    up = soxr.resample(samples, rate, rate * 4, quality="HQ")
    peak = float(np.max(np.abs(up))) if up.size else 0.0
    return 20 * math.log10(peak) if peak > 0 else None


def normalise(samples: Samples, rate: int, target: float) -> tuple[Samples, list[str]]:
    """`samples` at `target` LUFS, or quieter where that would put the true peak above
    `PEAK_CEILING_DB` (the ceiling wins, and a warning says by how much)."""
    measured, peak = loudness(samples, rate), true_peak_db(samples, rate)
    if measured is None or peak is None:
        return samples, ["track: silent or too short to measure its loudness; left as it was"]
    db = target - measured
    warnings = []
    if peak + db > PEAK_CEILING_DB:
        over = peak + db - PEAK_CEILING_DB
        db -= over
        warnings.append(
            f"track: {target:g} LUFS would put the true peak above {PEAK_CEILING_DB:g} dBTP; "
            f"delivered {over:.1f} LU quieter, at {target - over:.1f} LUFS"
        )
    gained = np.clip(samples * np.float32(10 ** (db / 20)), -1.0, 1.0)
    return gained.astype(np.float32), warnings
