"""Cues out of a subtitle file (SRT, WebVTT, ASS/SSA through `pysubs2`), each with its voice
and emotion.

Cues are numbered from 1 in file order, empty ones included (an SRT's own numbers when they
run 1, 2, 3...); an empty cue is not spoken. The spoken text loses ASS override tags
(`{\\i1}`), line breaks and a known speaker's `NAME: ` prefix. An inline `{emo=happy}` or
`{emo=happy:0.6}` anywhere in a cue sets its emotion (one of `common.schemas.jobs.EMOTIONS`; the
weight, 0-1, defaults to 1). The voice map (TOML) is described in `ttsq/dub.py`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.schemas.job_request import EMOTIONS

EMO_TAG = re.compile(r"\{emo=([A-Za-z]+)(?::([0-9]*\.?[0-9]+))?\}")
OVERRIDE = re.compile(r"\{[^}]*\}")
SPEAKER = re.compile(r"^\s*([^:\n]{1,40}?)\s*:\s+")
RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


class SubtitleError(ValueError):
    """The subtitles or the voice map cannot be read; nothing was submitted."""


@dataclass(frozen=True)
class Emotion:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class Cue:
    #: 1-based, in file order, empty cues included.
    number: int
    start_ms: int
    end_ms: int
    text: str
    voice: str | None = None
    emotion: Emotion | None = None

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


class VoiceMap(BaseModel):
    """The `--voices` TOML: who speaks each cue, and how it feels."""

    model_config = ConfigDict(extra="forbid")

    #: ASS style name -> voice.
    styles: dict[str, str] = Field(default_factory=dict)
    #: Speaker (an SRT/VTT `NAME: ` prefix, or an ASS line's Name field) -> voice.
    speakers: dict[str, str] = Field(default_factory=dict)
    #: Cue numbers, `"1-20"` or `"7"` -> voice; wins over styles and speakers.
    ranges: dict[str, str] = Field(default_factory=dict)
    #: ASS style name -> emotion (`happy` or `happy:0.6`); an inline tag wins.
    emotions: dict[str, str] = Field(default_factory=dict)

    def voices(self) -> set[str]:
        return {*self.styles.values(), *self.speakers.values(), *self.ranges.values()}

    def range_voice(self, number: int) -> str | None:
        for spec, voice in self.ranges.items():
            first, last = parse_range(spec)
            if first <= number <= last:
                return voice
        return None


def parse_range(spec: str) -> tuple[int, int]:
    match = RANGE.match(spec)
    if match is None:
        raise SubtitleError(f"ranges: {spec!r} is not a cue number or a range like '1-20'")
    first = int(match[1])
    last = int(match[2]) if match[2] else first
    if first < 1 or last < first:
        raise SubtitleError(f"ranges: {spec!r} must run from cue 1 upwards, low to high")
    return first, last


def load_voice_map(path: Path) -> VoiceMap:
    """Read and check a voice map; a bad one is a `SubtitleError` naming what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        voice_map = VoiceMap.model_validate(data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SubtitleError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SubtitleError(f"{path}: {why}") from exc
    for spec in voice_map.ranges:
        parse_range(spec)
    for style, spec in voice_map.emotions.items():
        parse_emotion(spec, f"{path}: emotions.{style}")
    return voice_map


def parse_emotion(spec: str, where: str) -> Emotion:
    name, _, weight = spec.partition(":")
    if name not in EMOTIONS:
        raise SubtitleError(f"{where}: emotion {name!r} is not one of {', '.join(EMOTIONS)}")
    try:
        value = float(weight) if weight else 1.0
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise SubtitleError(f"{where}: emotion weight {weight!r} must be between 0 and 1")
    return Emotion(name, value)


def read_cues(path: Path, voice_map: VoiceMap | None, voice: str | None) -> list[Cue]:
    """The spoken cues of `path` (empty ones left out), each with its voice and emotion."""
    import pysubs2

    try:
        subs = pysubs2.load(str(path), encoding="utf-8")
    except (OSError, UnicodeDecodeError, pysubs2.Pysubs2Error) as exc:
        raise SubtitleError(f"{path}: {exc}") from exc
    vmap = voice_map or VoiceMap()
    cues: list[Cue] = []
    events = [e for e in subs.events if not e.is_comment]
    for number, event in enumerate(events, 1):
        where = f"{path}: cue {number}"
        raw = event.text
        tags = EMO_TAG.findall(raw)
        emotion = parse_emotion(f"{tags[-1][0]}:{tags[-1][1]}".rstrip(":"), where) if tags else None
        if emotion is None and event.style in vmap.emotions:
            emotion = parse_emotion(vmap.emotions[event.style], where)
        text = OVERRIDE.sub("", EMO_TAG.sub("", raw))
        text = " ".join(re.sub(r"\\[Nnh]", " ", text).split())
        speaker = event.name or None
        prefix = SPEAKER.match(text)
        if prefix is not None and prefix[1] in vmap.speakers:
            speaker, text = prefix[1], text[prefix.end() :]
        if not any(ch.isalnum() for ch in text):
            continue
        if event.end <= event.start:
            raise SubtitleError(f"{where}: ends ({event.end} ms) before it starts")
        chosen = (
            vmap.range_voice(number)
            or (vmap.speakers.get(speaker) if speaker else None)
            or vmap.styles.get(event.style)
            or voice
        )
        cues.append(Cue(number, event.start, event.end, text, chosen, emotion))
    if not cues:
        raise SubtitleError(f"{path}: no cue with text to speak")
    return cues
