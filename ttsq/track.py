"""One track out of many lines: each placed at its start, silence elsewhere, then the whole
brought to a loudness (ITU-R BS.1770 integrated, through `pyloudnorm`) under a peak ceiling.

The measure is the worker's own (`common/audio/loudness.py`), applied once to the finished track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.audio import loudness
from common.audio.codec import Samples, to_mono

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


def normalise(samples: Samples, rate: int, target: float) -> tuple[Samples, list[str]]:
    """`samples` at `target` LUFS, or quieter where that would put the true peak above
    `PEAK_CEILING_DB` (the ceiling wins, and a warning says by how much); clipped to full
    scale, as a track is written."""
    out, warnings = loudness.normalise(samples, rate, target=target, ceiling=PEAK_CEILING_DB)
    return np.clip(out, -1.0, 1.0).astype(np.float32), [f"track: {w}" for w in warnings]
