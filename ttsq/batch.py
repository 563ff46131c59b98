"""`ttsq batch segments.jsonl`: many segments through the API, resumably.

Each line is one segment: `{"id": "seg-001", "text": "...", ...}` with any other `JobRequest`
field (`voice`, `language`, `emotion`, `generation`, `metadata`, `format`). Its audio is
written beside the file (or into `--out-dir`, made first if missing) as `<id>.<format>`
(`seg-001.mp3` for `"format": "mp3"`), whole or not at all. A job's warnings (a stretch
capped, a control the engine ignored) are printed as they come, and counted at the end. A
rerun skips segments whose audio exists, and picks up the jobs a stopped run left in flight
(kept in `.<name>.jobs`) instead of submitting them again, so no GPU time is spent twice.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobResource, JobStatus
from ttsq.client import Client, NotFound, ServiceBusy, TtsqClientError, Unreachable

SEGMENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
POLL_S = 0.5


class BatchError(ValueError):
    """The segments file is malformed; nothing was submitted."""


@dataclass
class Segment:
    id: str
    request: JobRequest
    audio: Path
    job: str | None = None
    #: The job came from an earlier run's ledger: if it failed, this run tries again.
    resumed: bool = False


def read_segments(path: Path, out_dir: Path) -> list[Segment]:
    segments: list[Segment] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            seg_id = fields.pop("id")
            request = JobRequest.model_validate(fields)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            why = "no id" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            if isinstance(exc, ValidationError):
                why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BatchError(f"{path}:{n}: {why}") from exc
        if not isinstance(seg_id, str) or not SEGMENT_ID.match(seg_id):
            raise BatchError(f"{path}:{n}: id {seg_id!r} must match {SEGMENT_ID.pattern}")
        if seg_id in seen:
            raise BatchError(f"{path}:{n}: id {seg_id!r} appears twice")
        seen.add(seg_id)
        segments.append(Segment(seg_id, request, out_dir / f"{seg_id}.{request.format}"))
    return segments


class JobLedger:
    """Which job each segment was submitted as, so a rerun waits on it rather than resubmit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jobs: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                seg_id, _, job_id = line.partition(" ")
                if job_id:
                    self.jobs[seg_id] = job_id

    def record(self, seg_id: str, job_id: str) -> None:
        self.jobs[seg_id] = job_id
        with open(self.path, "a") as f:
            f.write(f"{seg_id} {job_id}\n")


class Progress:
    """One line, redrawn in place on a terminal; a new line per change otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.last = total, ""
        self.tty = sys.stderr.isatty()

    def show(self, done: int, failed: int, running: int, queued: int) -> None:
        text = f"[{done + failed}/{self.total}] done {done}, failed {failed}, "
        text += f"running {running}, queued {queued}"
        if text != self.last:
            print(("\r" + text) if self.tty else text, end="" if self.tty else "\n",
                  file=sys.stderr, flush=True)  # fmt: skip
            self.last = text

    def end(self) -> None:
        if self.tty and self.last:
            print(file=sys.stderr)


def run_batch(
    client: Client, segments_file: Path, *, out_dir: Path | None = None, in_flight: int = 16
) -> int:
    out = out_dir or segments_file.parent
    segments = read_segments(segments_file, out)
    try:  # before anything is submitted: a job's id has nowhere to go without it
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"--out-dir {out}: cannot be made ({exc.strerror})") from exc
    ledger = JobLedger(out / f".{segments_file.stem}.jobs")
    todo = [s for s in segments if not s.audio.exists()]
    skipped = len(segments) - len(todo)
    if skipped:
        print(f"{skipped} of {len(segments)} segments already have audio; skipping them",
              file=sys.stderr)  # fmt: skip
    for seg in todo:
        seg.job = ledger.jobs.get(seg.id)
        seg.resumed = seg.job is not None
    done, failed, warned = skipped, 0, 0
    failures: list[str] = []
    pending, active = list(todo), list[Segment]()
    progress = Progress(len(segments))
    while pending or active:
        while pending and len(active) < in_flight:
            seg = pending.pop(0)
            if seg.job is None:
                seg.job = client.submit(seg.request).id
                ledger.record(seg.id, seg.job)
            active.append(seg)
        running = 0
        for seg in list(active):
            job = _look(client, seg)
            if job is None:  # expired, or an earlier run's failure: submit again
                seg.job, seg.resumed = None, False
                active.remove(seg)
                pending.insert(0, seg)
            elif job.status.terminal:
                active.remove(seg)
                for warning in job.warnings:
                    print(f"\n{seg.id}: warning: {warning}", file=sys.stderr)
                warned += len(job.warnings)
                if job.audio is not None:
                    client.download(job, seg.audio)
                    done += 1
                else:
                    failed += 1
                    error = f"{job.error.code}: {job.error.message}" if job.error else ""
                    failures.append(f"{seg.id}: job {job.id} {job.status.value} {error}")
            elif job.status is JobStatus.running:
                running += 1
        progress.show(done, failed, running, len(active) - running + len(pending))
        if active:
            time.sleep(POLL_S)
    progress.end()
    for line in failures:
        print(line, file=sys.stderr)
    if warned:
        print(f"{warned} warning{'s' if warned != 1 else ''} (above)", file=sys.stderr)
    return 1 if failed else 0


def _look(client: Client, seg: Segment) -> JobResource | None:
    assert seg.job is not None
    try:
        job = client.get(seg.job)
    except NotFound:
        return None
    except (Unreachable, ServiceBusy):
        return client.wait(seg.job, timeout=600)  # ride out an outage, then look again
    if seg.resumed and job.status.terminal and job.audio is None:
        return None
    return job


def batch(base_url: str, api_key: str | None, segments_file: str, out_dir: str | None) -> int:
    from ttsq.say import quiet_http_logs

    quiet_http_logs()
    try:
        with Client(base_url, api_key or "") as client:
            return run_batch(
                client, Path(segments_file), out_dir=Path(out_dir) if out_dir else None
            )
    except BatchError as exc:
        print(f"ttsq batch: {exc}", file=sys.stderr)
        return 2
    except TtsqClientError as exc:
        print(f"\nttsq batch: {exc.message} (rerun to resume)", file=sys.stderr)
        return 1
