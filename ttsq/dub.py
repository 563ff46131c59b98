"""`ttsq dub SUBTITLES --out track.wav`: a whole video's subtitles in, one fitted track out.

Every cue with text becomes one job, fitted exactly to its slot (`target_duration_s` = end -
start, `strict_duration`), all sent as one batch (1000 cues a batch). Each line is kept as
`<out stem>.lines/<cue:04d>.<fmt>`; the track (WAV, FLAC or MP3, by `--out`'s suffix) holds
each at its start, silence elsewhere, as long as the last cue's end, at `--lufs` (EBU R128).

Voices: `--voices map.toml` (a cue takes the first that names it: ranges, speakers, styles),
else `--voice NAME`, else the engine's default:

    [styles]            # an ASS style -> voice
    Default = "narrator"
    [speakers]          # an SRT/VTT `NAME: text` prefix (or an ASS Name) -> voice; the
    ANNA = "anna.wav"   # prefix is not spoken. A path is a reference recording, uploaded.
    [ranges]            # cue numbers (from 1) -> voice; wins over the two above
    "1-20" = "v_0123456789abcdef0123456789abcdef"
    [emotions]          # an ASS style -> emotion (an inline {emo=...} wins)
    Shouting = "angry:0.8"

An inline `{emo=happy}` or `{emo=happy:0.6}` in a cue sets its emotion vector; an engine that
lacks emotion speaks the line anyway, with a warning.

Resumable: the ledger `<out>.dub.json` is written before each submit with the batch's
`Idempotency-Key` (a sha256 of its requests), so a rerun after Ctrl-C joins the same batch and
nothing is synthesised twice. A failed line is tried once more as its own job; if that fails
too, its slot stays silent, the report names it, and the command exits 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from common.audio import codec as audio
from common.audio import loudness
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobResource
from ttsq import dub_jobs, track
from ttsq.client import Client, NotFound, TtsqClientError
from ttsq.dub_report import DubReport, LineOutcome
from ttsq.subtitles import Cue, SubtitleError, VoiceMap, load_voice_map, read_cues

FORMATS = ("wav", "flac", "mp3")
POLL_S = 0.5
#: The track's rate when no line came back and `--rate` was not given.
FALLBACK_RATE = 22050


@dataclass(frozen=True)
class DubOptions:
    subtitles: Path
    out: Path
    voice: str | None = None
    voices: Path | None = None
    rate: int | None = None
    lufs: float = -23.0
    json: bool = False


def printer(console: Console) -> Callable[[str], None]:
    """Plain lines on the console (above the progress bar while it shows), never wrapped."""

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    return say


class Run:
    """One pass over the batches: submit or join them, then follow every line to its end."""

    def __init__(
        self,
        client: Client,
        options: DubOptions,
        cues: list[Cue],
        bodies: dict[int, dict[str, Any]],
        lines_dir: Path,
        console: Console,
    ) -> None:
        self.client, self.bodies, self.say = client, bodies, printer(console)
        self.fmt = options.out.suffix.lower().lstrip(".")
        self.cues = {c.number: c for c in cues}
        self.ledger_path, self.lines_dir = Path(f"{options.out}.dub.json"), lines_dir
        old = dub_jobs.Ledger.load(self.ledger_path, str(options.subtitles))
        # Only this run's batches: an edited subtitle file makes other keys, other batches.
        self.ledger = dub_jobs.Ledger(subtitles=str(options.subtitles), retries=old.retries)
        self.items = dub_jobs.chunks(bodies)
        self.ledger.batches = [old.batch(dub_jobs.batch_key(chunk)) for chunk in self.items]
        self.outcomes: dict[int, LineOutcome] = {}

    def submit(self) -> None:
        from common.schemas.batches import BatchRequest

        for chunk, entry in zip(self.items, self.ledger.batches, strict=True):
            if entry.batch_id is not None:
                try:
                    self.client.get_batch(entry.batch_id)
                    continue
                except NotFound:  # expired: the key (24 h) is gone too, so a new batch
                    entry.batch_id = None
            self.ledger.save(self.ledger_path)
            batch = self.client.submit_batch(
                BatchRequest(items=chunk), idempotency_key=entry.idempotency_key
            )
            entry.batch_id = batch.id
            self.ledger.save(self.ledger_path)

    def follow(self, progress: Progress) -> None:
        task = progress.add_task("dub", total=len(self.bodies), failed=0)
        while len(self.outcomes) < len(self.bodies):
            for entry in self.ledger.batches:
                assert entry.batch_id is not None
                for item in self.client.get_batch(entry.batch_id).items:
                    cue = dub_jobs.cue_of(item.ref)
                    if cue in self.outcomes or not item.status.terminal:
                        continue
                    if item.status.value == "succeeded":
                        self.finish(self.client.get(item.job_id))
                    elif cue not in self.ledger.retries:
                        self.retry(cue)
            for cue, job_id in self.ledger.retries.items():
                if cue not in self.outcomes:
                    job = self.client.get(job_id)
                    if job.status.terminal:
                        self.finish(job)
            failed = sum(1 for o in self.outcomes.values() if o.error)
            progress.update(task, completed=len(self.outcomes), failed=failed)
            if len(self.outcomes) < len(self.bodies):
                time.sleep(POLL_S)

    def retry(self, cue: int) -> None:
        body = self.bodies[cue]
        request = JobRequest.model_validate(body)
        job = self.client.submit(request, idempotency_key=dub_jobs.retry_key(body))
        self.ledger.retries[cue] = job.id
        self.ledger.save(self.ledger_path)

    def finish(self, job: JobResource) -> None:
        cue = int(job.input.metadata["dub_cue"])
        outcome = LineOutcome(
            cue=cue,
            job_id=job.id,
            slot_s=self.cues[cue].duration_s,
            gpu_s=job.metrics.gpu_s or 0.0,
            warnings=job.warnings,
        )
        if job.audio is None:
            why = f"{job.error.code}: {job.error.message}" if job.error else job.status.value
            outcome.error = f"job {job.id} {job.status.value} ({why})"
            self.say(f"cue {cue}: failed: {outcome.error}")
        else:
            outcome.duration_s = job.audio.duration_s
            dest = self.line_path(cue)
            if not dest.exists() or dest.stat().st_size != job.audio.size_bytes:
                self.client.download(job, dest)
        for warning in job.warnings:
            self.say(f"cue {cue}: warning: {warning}")
        self.outcomes[cue] = outcome

    def line_path(self, cue: int) -> Path:
        return self.lines_dir / f"{cue:04d}.{self.fmt}"


def build_track(run: Run, options: DubOptions, fmt: str) -> tuple[float, float | None, list[str]]:
    """Write the track; its length (s), loudness (LUFS) and warnings."""
    lines: list[track.Placed] = []
    rate = options.rate
    for cue, outcome in sorted(run.outcomes.items()):
        if outcome.error is not None:
            continue
        samples, line_rate = audio.decode(run.line_path(cue).read_bytes())
        rate = rate or line_rate
        c = run.cues[cue]
        start, end = track.frame(c.start_ms, rate), track.frame(c.end_ms, rate)
        lines.append(track.Placed(start, end, track.resampled(samples, line_rate, rate)))
    rate = rate or FALLBACK_RATE
    frames = track.frame(max(c.end_ms for c in run.cues.values()), rate)
    samples, warnings = track.normalise(track.place(lines, frames), rate, options.lufs)
    part = options.out.with_name(f".{options.out.name}.part")
    part.write_bytes(audio.encode(samples, rate, fmt))
    part.replace(options.out)
    return frames / rate, loudness.integrated(samples, rate), warnings


def prepare(options: DubOptions) -> tuple[str, list[Cue], VoiceMap | None, Path]:
    """Check everything local, and make the output folders, before anything is sent."""
    fmt = options.out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise SubtitleError(f"--out: {options.out.name} must end in .wav, .flac or .mp3")
    vmap = load_voice_map(options.voices) if options.voices else None
    cues = read_cues(options.subtitles, vmap, options.voice)
    lines_dir = options.out.parent / f"{options.out.stem}.lines"
    try:
        lines_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SubtitleError(f"cannot make the output folder {lines_dir}: {exc.strerror}") from exc
    return fmt, cues, vmap, lines_dir


def dub(base_url: str, api_key: str | None, options: DubOptions) -> int:
    from ttsq.say import quiet_http_logs

    quiet_http_logs()
    console = Console(stderr=True)
    try:
        fmt, cues, vmap, lines_dir = prepare(options)
    except SubtitleError as exc:
        printer(console)(f"ttsq dub: {exc}")
        return 2
    try:
        with Client(base_url, api_key or "", timeout=60) as client:
            named: dict[str, Path] = {}
            map_dir = options.voices.parent if options.voices else Path.cwd()
            for voice in vmap.voices() if vmap else set():
                named[voice] = map_dir
            if options.voice:
                named[options.voice] = Path.cwd()
            voices = dub_jobs.resolve_voices(client, named, printer(console))
            bodies = {
                c.number: dub_jobs.job_request(c, voices.get(c.voice or ""), fmt, options.rate)
                for c in cues
            }
            run = Run(client, options, cues, bodies, lines_dir, console)
            run.submit()
            with Progress(
                TextColumn("dub"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                run.follow(progress)
    except SubtitleError as exc:
        printer(console)(f"ttsq dub: {exc}")
        return 2
    except KeyboardInterrupt:
        printer(console)("ttsq dub: interrupted; run the same command again to resume")
        return 130
    except TtsqClientError as exc:
        printer(console)(f"ttsq dub: {exc.message} (rerun to resume)")
        return 1
    length, loudness, warnings = build_track(run, options, fmt)
    report = DubReport.build(
        list(run.outcomes.values()),
        track=str(options.out),
        lines_dir=str(lines_dir),
        track_s=length,
        loudness=loudness,
        track_warnings=warnings,
        batch_ids=[b.batch_id for b in run.ledger.batches if b.batch_id],
    )
    if options.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(report.text())
    return 1 if report.failed else 0
