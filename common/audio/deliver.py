"""What happens to the engine's audio before it is delivered: silence trimmed, speed, fit to a
target duration, pitch, energy, sample rate, channels, loudness and format. Runs on the I/O
worker, off the GPU's path.

Libraries, not hand-written DSP: Rubber Band (through `pedalboard.time_stretch`) stretches time
with the pitch kept, `pedalboard.PitchShift` moves pitch, `soxr` resamples, `pyloudnorm`
measures loudness (`loudness.py`), libsndfile encodes FLAC and Ogg Opus, LAME (through
`pedalboard`) encodes MP3. Only gains and the trimming cut are ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common.audio import codec as audio
from common.audio import fit, loudness
from common.audio.codec import Samples
from common.schemas.job_request import MP3_RATES, OPUS_RATES, JobRequest
from common.storage import CONTENT_TYPES


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


def _carried_rate(rate: int, fmt: str) -> int:
    """The engine's rate where `fmt` carries it, else the next rate up that it does."""
    rates = {"mp3": MP3_RATES, "opus": OPUS_RATES}.get(fmt)
    if rates is None or rate in rates:
        return rate
    return min((r for r in rates if r >= rate), default=max(rates))


def _decoded(data: bytes, fmt: str, rate: int, channels: int) -> Samples:
    return audio.decode_raw(data, rate, channels) if fmt == "pcm_s16le" else audio.decode(data)[0]


def deliver(
    wav: bytes,
    request: JobRequest,
    *,
    max_stretch: float,
    strict_duration: bool = False,
    max_strict_stretch: float = 2.5,
) -> Delivered:
    """The engine's WAV as the request asked for it. Loudness and peak are measured on the
    delivered file, decoded, so they are what a client measures.

    `strict_duration` (TTS_STRICT_DURATION; the request's own `strict_duration` wins): a job
    with a target is exactly round(target_duration_s * sample_rate) frames at the delivered
    rate (`fit`, then made exact again after resampling). Exact as WAV, FLAC and raw PCM; a
    decoded MP3 (or Opus) may differ by the encoder's padding and priming.
    """
    strict = request.strict_duration if request.strict_duration is not None else strict_duration
    samples, rate = audio.decode(wav)
    samples = audio.to_mono(samples)
    stretch: float | None = None
    warnings: list[str] = []
    if request.trim_silence:
        threshold = request.silence_threshold_db
        samples, warnings = fit.trim(
            samples, rate, audio.SILENCE_THRESHOLD_DB if threshold is None else threshold
        )
    if not request.segments:  # a timed script's segments were fitted one by one already
        samples, stretch, more = fit.fit(
            samples,
            rate,
            target_s=request.target_duration_s,
            speed=request.speed,
            max_stretch=request.max_stretch or max_stretch,
            strict=strict,
            max_strict_stretch=max_strict_stretch,
        )
        warnings += more
    if request.pitch is not None and request.pitch != 1.0:
        samples = fit.pitch(samples, rate, request.pitch)
    if request.energy is not None and request.energy != 1.0:
        samples, more = fit.energy(samples, request.energy)
        warnings += more
    out_rate = request.sample_rate or _carried_rate(rate, request.format)
    if out_rate != rate:
        samples = fit.resample(samples, rate, out_rate)
    if request.target_duration_s and (request.segments or strict):
        # A timed script is padded or cut to its end; a strict fit, already exact at the
        # engine's rate, is made exact again at the delivered one (resampling rounds).
        frames = round(request.target_duration_s * out_rate)
        samples = (
            fit.fade_to(samples, frames, out_rate) if strict else fit.exact_length(samples, frames)
        )
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
