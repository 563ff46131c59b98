"""`ttsq batch` and `ttsq status` as a user runs them, against a running stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.engines import calls
from tests.support.servers import REPO, wait_for
from tests.support.stack import KEYS, Stack, wav_ok

pytestmark = pytest.mark.integration


def ttsq(stack: Stack, *args: str) -> list[str]:
    return [sys.executable, "-m", "ttsq.cli", *args, "--url", stack.url, "--key", KEYS["dave"]]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "INDEXTTS_"))}


def run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ttsq(stack, *args), env=clean_env(), cwd=REPO, capture_output=True, text=True, timeout=120
    )


def write_segments(path: Path, segments: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in segments))


def test_batch_is_resumable_and_never_resubmits_a_job_in_flight(
    stack: Stack, tmp_path: Path
) -> None:
    probe = tmp_path.name  # unique per test run: the engine's ledger counts calls per probe
    segments = [
        {"id": f"seg-{n}", "text": f"Segment number {n}.", "metadata": {"probe": f"{probe}-{n}"}}
        for n in range(3)
    ]
    segments[2]["metadata"] = {"probe": f"{probe}-2", "script": "sleep:3"}
    segments.append({"id": "seg-bad", "text": "不行", "metadata": {"probe": f"{probe}-bad"}})
    segments[3]["metadata"]["script"] = "reject"  # type: ignore[index]
    jsonl = tmp_path / "segments.jsonl"
    write_segments(jsonl, segments)
    ledger = tmp_path / ".segments.jobs"

    # A first run, killed once everything is submitted but before the slow segment is done.
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(
            ttsq(stack, "batch", str(jsonl)), env=clean_env(), cwd=REPO, stdout=log, stderr=log
        )
    wait_for(
        lambda: ledger.exists() and len(ledger.read_text().splitlines()) == 4, 30, "4 submissions"
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert not (tmp_path / "seg-2.wav").exists()

    second = run(stack, "batch", str(jsonl))
    assert second.returncode == 1, second.stderr  # the rejected segment fails the batch
    assert "seg-bad: job" in second.stderr and "engine_rejected_input" in second.stderr
    assert "HTTP Request" not in second.stderr + second.stdout  # no httpx INFO lines
    assert "[4/4] done 3, failed 1" in second.stderr
    for n in range(3):
        assert wav_ok((tmp_path / f"seg-{n}.wav").read_bytes()) > 0.3
        assert calls(stack.ledger, f"{probe}-{n}") == 1, "a job in flight was submitted again"
    assert not (tmp_path / "seg-bad.wav").exists()
    # A segment that had failed when the first run was killed is tried again, once.
    assert calls(stack.ledger, f"{probe}-bad") == 2
    assert not list(tmp_path.glob(".*.part"))

    # A third run skips what has audio, fetches again what was deleted (its job is still
    # there, so no GPU time is spent twice) and tries the failed segment once more.
    (tmp_path / "seg-0.wav").unlink()
    third = run(stack, "batch", str(jsonl))
    assert third.returncode == 1
    assert "2 of 4 segments already have audio" in third.stderr
    assert wav_ok((tmp_path / "seg-0.wav").read_bytes()) > 0.3  # fetched again, not remade
    assert calls(stack.ledger, f"{probe}-0") == 1
    assert calls(stack.ledger, f"{probe}-bad") == 3


def test_batch_refuses_a_malformed_file_before_submitting_anything(
    stack: Stack, tmp_path: Path
) -> None:
    jsonl = tmp_path / "bad.jsonl"
    write_segments(jsonl, [{"id": "a", "text": "fine"}, {"id": "../evil", "text": "no"}])
    result = run(stack, "batch", str(jsonl))
    assert result.returncode == 2 and "bad.jsonl:2: id '../evil'" in result.stderr
    assert not (tmp_path / ".bad.jobs").exists()
    write_segments(jsonl, [{"id": "a", "text": "one"}, {"id": "a", "text": "two"}])
    assert "appears twice" in run(stack, "batch", str(jsonl)).stderr


def test_status_lists_the_newest_jobs_and_shows_one(stack: Stack, tmp_path: Path) -> None:
    job = stack.submit("dave", text="For the status command.")
    stack.wait_end(job["id"], owner="dave")
    listing = run(stack, "status")
    assert listing.returncode == 0, listing.stderr
    said = httpx.get(f"{stack.url}/health").json()["status"]
    assert f"{stack.url}: {said}" in listing.stdout
    assert f"{job['id']}  succeeded" in listing.stdout
    one = run(stack, "status", job["id"])
    assert json.loads(one.stdout)["status"] == "succeeded"
    missing = run(stack, "status", "0" * 32)
    assert missing.returncode == 1 and "job_not_found" in missing.stderr


def test_batch_makes_a_missing_out_dir_before_submitting_anything(
    stack: Stack, tmp_path: Path
) -> None:
    jsonl = tmp_path / "made.jsonl"
    write_segments(jsonl, [{"id": "m1", "text": "Into a new folder."}])
    out = tmp_path / "missing" / "dir"
    result = run(stack, "batch", str(jsonl), "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert wav_ok((out / "m1.wav").read_bytes()) > 0.3
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    before = _jobs(stack)
    refused = run(stack, "batch", str(jsonl), "--out-dir", str(blocked / "sub"))
    assert refused.returncode == 2 and "cannot be made" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _jobs(stack) == before  # nothing submitted


def _jobs(stack: Stack) -> int:
    r = httpx.get(f"{stack.url}/v1/jobs?limit=100", headers=stack.headers("dave"))
    return len(r.json()["data"])


def test_batch_names_each_file_by_its_delivered_format(stack: Stack, tmp_path: Path) -> None:
    jsonl = tmp_path / "formats.jsonl"
    write_segments(jsonl, [{"id": "f1", "text": "An MP3, please.", "format": "mp3"}])
    result = run(stack, "batch", str(jsonl))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "f1.wav").exists()
    data = (tmp_path / "f1.mp3").read_bytes()
    assert data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")


def test_batch_prints_each_warning_and_counts_them(stack: Stack, tmp_path: Path) -> None:
    jsonl = tmp_path / "tight.jsonl"
    text = "This sentence is far too long for the slot it has been given here."
    write_segments(jsonl, [{"id": "w1", "text": text, "target_duration_s": 0.5}])
    result = run(stack, "batch", str(jsonl))
    assert result.returncode == 0, result.stderr
    assert "w1: warning:" in result.stderr and "1 warning (above)" in result.stderr


def test_status_without_a_job_shows_the_stack(stack: Stack) -> None:
    listing = run(stack, "status")
    assert listing.returncode == 0, listing.stderr
    assert "waiting;" in listing.stdout and "synthesis worker(s) ready" in listing.stdout
    assert "worker  synth" in listing.stdout and "jobs    last hour" in listing.stdout
