"""What `ttsq dub` reports at the end: per line, and for the whole track (text or JSON)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

#: What a strict fit says when it had to cut a line that was too long for its slot.
TRIMMED = re.compile(r"trimmed (\d+(?:\.\d+)?)s")


class LineWarning(BaseModel):
    cue: int
    warning: str


class MissedSlot(BaseModel):
    cue: int
    #: Seconds of the line that did not fit its slot (cut), or by which its length differs.
    by_s: float


class FailedLine(BaseModel):
    cue: int
    reason: str


class LineOutcome(BaseModel):
    """One cue's line, once it ended."""

    cue: int
    job_id: str
    slot_s: float
    duration_s: float | None = None
    gpu_s: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None

    def missed_by(self) -> float | None:
        cut = sum(float(m[1]) for w in self.warnings for m in TRIMMED.finditer(w))
        if cut > 0:
            return round(cut, 3)
        if self.duration_s is not None and abs(self.duration_s - self.slot_s) > 0.01:
            return round(abs(self.duration_s - self.slot_s), 3)
        return None


class DubReport(BaseModel):
    """The whole run: `--json` prints this as it is."""

    track: str
    lines_dir: str
    #: Cues with text, each one line.
    lines: int
    succeeded: int
    failed: list[FailedLine]
    #: The track's length, and the speech delivered in it.
    audio_minutes: float
    speech_minutes: float
    gpu_seconds: float
    loudness_lufs: float | None
    warning_count: int
    warnings: list[LineWarning]
    missed_slots: list[MissedSlot]
    batch_ids: list[str]

    @classmethod
    def build(
        cls,
        outcomes: list[LineOutcome],
        *,
        track: str,
        lines_dir: str,
        track_s: float,
        loudness: float | None,
        track_warnings: list[str],
        batch_ids: list[str],
    ) -> DubReport:
        ok = [o for o in outcomes if o.error is None]
        warnings = [LineWarning(cue=o.cue, warning=w) for o in outcomes for w in o.warnings]
        warnings += [LineWarning(cue=0, warning=w) for w in track_warnings]
        missed = [MissedSlot(cue=o.cue, by_s=by) for o in ok if (by := o.missed_by()) is not None]
        return cls(
            track=track,
            lines_dir=lines_dir,
            lines=len(outcomes),
            succeeded=len(ok),
            failed=[FailedLine(cue=o.cue, reason=o.error) for o in outcomes if o.error],
            audio_minutes=round(track_s / 60, 3),
            speech_minutes=round(sum(o.duration_s or 0.0 for o in ok) / 60, 3),
            gpu_seconds=round(sum(o.gpu_s for o in outcomes), 3),
            loudness_lufs=None if loudness is None else round(loudness, 1),
            warning_count=len(warnings),
            warnings=warnings,
            missed_slots=missed,
            batch_ids=batch_ids,
        )

    def text(self) -> str:
        loud = f", {self.loudness_lufs:g} LUFS" if self.loudness_lufs is not None else ""
        out = [
            f"{self.track}: {self.succeeded} of {self.lines} lines, "
            f"{self.audio_minutes:.2f} min of audio ({self.speech_minutes:.2f} min speech){loud}",
            f"lines: {self.lines_dir}",
            f"GPU seconds: {self.gpu_seconds:.2f}",
            f"warnings: {self.warning_count}",
        ]
        if self.missed_slots:
            out.append(f"missed their slot: {len(self.missed_slots)}")
            out += [f"  cue {m.cue}: by {m.by_s:.2f}s" for m in self.missed_slots]
        if self.failed:
            out.append(f"failed: {len(self.failed)} (silence in their slots)")
            out += [f"  cue {f.cue}: {f.reason}" for f in self.failed]
        return "\n".join(out)
