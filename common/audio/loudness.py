"""Loudness and peaks: ITU-R BS.1770 integrated loudness (`pyloudnorm`) and a true-peak
estimate from 4x oversampling (`soxr`), as BS.1770 annex 2 describes. Only the gain is ours.
"""

from __future__ import annotations

import math

import numpy as np

from common.audio.codec import Samples

#: BS.1770 gates 400 ms blocks: anything shorter has no integrated loudness.
BLOCK_S = 0.4


def integrated(samples: Samples, rate: int) -> float | None:
    """LUFS of `samples` (frames, or frames x channels); None when too short or silent."""
    import pyloudnorm

    if samples.shape[0] < BLOCK_S * rate:
        return None
    value = float(pyloudnorm.Meter(rate).integrated_loudness(samples))
    return value if math.isfinite(value) else None


def true_peak(samples: Samples, rate: int) -> float | None:
    """dBTP: the highest magnitude of `samples` upsampled 4x; None for silence."""
    import soxr

    up = soxr.resample(samples, rate, rate * 4, quality="HQ")
    peak = float(np.max(np.abs(up))) if up.size else 0.0
    return 20 * math.log10(peak) if peak > 0 else None


def gain(samples: Samples, db: float) -> Samples:
    return (samples * np.float32(10 ** (db / 20))).astype(np.float32)


def normalise(
    samples: Samples, rate: int, *, target: float, ceiling: float
) -> tuple[Samples, list[str]]:
    """`samples` at `target` LUFS, or quieter where that would put the true peak above
    `ceiling` dBTP (no limiter: the ceiling wins, and a warning says by how much)."""
    measured = integrated(samples, rate)
    peak = true_peak(samples, rate)
    if measured is None or peak is None:
        return samples, [
            f"loudness: the audio is silent or shorter than {BLOCK_S:g}s, so it has no "
            "integrated loudness; left as it was"
        ]
    db = target - measured
    if peak + db <= ceiling:
        return gain(samples, db), []
    over = peak + db - ceiling
    return gain(samples, db - over), [
        f"loudness: {target:g} LUFS would put the true peak at {peak + db:+.1f} dBTP, above "
        f"the {ceiling:g} dBTP ceiling; delivered {over:.1f} LU quieter, at "
        f"{target - over:.1f} LUFS"
    ]
