"""`ttsq dub` as a user runs it: subtitles in, one fitted track out, against a running stack."""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.engines import calls
from tests.support.servers import REPO, RedisServer, S3Server, wait_for
from tests.support.stack import DB, KEYS, Stack
from tests.support.text_engine import HOLD_FILE, REJECT_MARK

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "tests" / "data" / "dub_example.srt"
RATE = 22050
TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+) --> (\d+):(\d+):(\d+)[,.](\d+)")


@pytest.fixture(scope="module")
def dub_stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("dub"),
        redis_server,
        s3_server,
        db=DB["cli_dub"],
        TTS_BACKEND="tests.support.text_engine:TextScriptedEngine",
        # The GPU's time per line.
        TTS_TEST_ENGINE_DELAY_S="0.15",
    ).start()
    yield stack
    stack.stop()


def dub_cmd(stack: Stack, owner: str, *args: str) -> list[str]:
    url_key = ["--url", stack.url, "--key", KEYS[owner]]
    return [sys.executable, "-m", "ttsq.cli", "dub", *args, *url_key]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "INDEXTTS_"))}


def dub(stack: Stack, owner: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        dub_cmd(stack, owner, *args),
        env=clean_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def cues(srt: Path) -> list[tuple[int, int, str, str]]:
    """(start ms, end ms, speaker, text) of each cue of an SRT."""
    out = []
    for block in srt.read_text().strip().split("\n\n"):
        _, times, text = block.split("\n", 2)
        t = [int(x) for x in TIME.fullmatch(times).groups()]  # type: ignore[union-attr]
        start = ((t[0] * 60 + t[1]) * 60 + t[2]) * 1000 + t[3]
        end = ((t[4] * 60 + t[5]) * 60 + t[6]) * 1000 + t[7]
        speaker, _, spoken = text.partition(": ")
        out.append((start, end, speaker, spoken))
    return out


def vtt(items: list[tuple[int, int, str, str]]) -> str:
    def ts(ms: int) -> str:
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

    blocks = [f"{ts(s)} --> {ts(e)}\n{who}: {text}" for s, e, who, text in items]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + "\n"


def ass(items: list[tuple[int, int, str, str]]) -> str:
    def ts(ms: int) -> str:
        return f"{ms // 3600000}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000 // 10:02d}"

    style = "Style: {},Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,"
    style += "0,0,1,2,2,2,10,10,10,1"
    events = [
        f"Dialogue: 0,{ts(s)},{ts(e)},{who.title()},,0,0,0,,{{\\i1}}"
        + text.replace("<i>", "").replace("</i>", "")
        for s, e, who, text in items
    ]
    return "\n".join(
        [
            "[Script Info]",
            "ScriptType: v4.00+",
            "",
            "[V4+ Styles]",
            "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
            "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
            "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
            style.format("Anna"),
            style.format("Ben"),
            "",
            "[Events]",
            "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
            *events,
            "",
        ]
    )


def read_wav(path: Path) -> tuple[np.ndarray[Any, np.dtype[np.float32]], int]:
    with wave.open(io.BytesIO(path.read_bytes())) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        frames, rate = w.readframes(w.getnframes()), w.getframerate()
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


def rms(samples: np.ndarray[Any, np.dtype[np.float32]]) -> float:
    return math.sqrt(float(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


def assert_placed(track: Path, items: list[tuple[int, int, str, str]]) -> None:
    samples, rate = read_wav(track)
    assert rate == RATE
    assert samples.shape[0] == round(items[-1][1] * rate / 1000), "not the last cue's end"
    loud_slots = 0
    for n, (start, end, _, _) in enumerate(items):
        a, b = round(start * rate / 1000), round(end * rate / 1000)
        if rms(samples[a:b]) > 0.01:
            loud_slots += 1
        gap_end = round(items[n + 1][0] * rate / 1000) if n + 1 < len(items) else samples.shape[0]
        assert rms(samples[b:gap_end]) < 1e-4, f"sound between cue {n + 1} and the next"
    assert not samples[: round(items[0][0] * rate / 1000)].any(), "sound before the first cue"
    assert loud_slots == len(items), f"{len(items) - loud_slots} slots are silent"


def jobs_of(stack: Stack, owner: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 100}
    while True:
        r = httpx.get(f"{stack.url}/v1/jobs", params=params, headers=stack.headers(owner))
        assert r.status_code == 200, r.text
        jobs += r.json()["data"]
        if not r.json()["next_cursor"]:
            return jobs
        params["cursor"] = r.json()["next_cursor"]


def engine_calls(stack: Stack) -> int:
    return calls(stack.ledger, "engine-spans")


def test_srt_vtt_and_ass_each_give_one_track_with_every_line_at_its_start(
    dub_stack: Stack, tmp_path: Path
) -> None:
    items = cues(EXAMPLE)
    assert len(items) >= 20 and {who for _, _, who, _ in items} == {"ANNA", "BEN"}
    (tmp_path / "film.vtt").write_text(vtt(items))
    (tmp_path / "film.ass").write_text(ass(items))
    (tmp_path / "voices.toml").write_text(
        '[speakers]\nANNA = "en-us"\nBEN = "en"\n[styles]\nAnna = "en-us"\nBen = "en"\n'
    )
    # The VTT's BEN speaks in a recording (the SRT run's own line 2), uploaded by the command.
    (tmp_path / "recorded.toml").write_text(
        '[speakers]\nANNA = "en-us"\nBEN = "srt/track.lines/0002.wav"\n'
    )
    runs = [("voices.toml", EXAMPLE), ("recorded.toml", tmp_path / "film.vtt")]
    runs.append(("voices.toml", tmp_path / "film.ass"))
    for voice_map, source in runs:
        out = tmp_path / source.suffix.lstrip(".") / "track.wav"
        voices_arg = ["--voices", str(tmp_path / voice_map), "--rate", str(RATE)]
        done = dub(dub_stack, "alice", str(source), "--out", str(out), *voices_arg)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{len(items)} of {len(items)} lines" in done.stdout
        assert_placed(out, items)
        lines = sorted((out.parent / "track.lines").iterdir())
        assert [p.name for p in lines] == [f"{n:04d}.wav" for n in range(1, len(items) + 1)]
        assert Path(f"{out}.dub.json").exists()
    spoken = {job["input"]["text"] for job in jobs_of(dub_stack, "alice")}
    assert "You made it! I was starting to worry." in spoken  # prefix and {emo=...} not spoken
    assert not any("{" in t or "ANNA" in t or "BEN:" in t for t in spoken)
    voices = {
        (job["input"]["text"], job["input"].get("voice")) for job in jobs_of(dub_stack, "alice")
    }
    assert ("The train was late again.", "en") in voices
    assert ("It always is on Fridays.", "en-us") in voices
    r = httpx.get(f"{dub_stack.url}/v1/voices", headers=dub_stack.headers("alice"))
    uploaded = [v["id"] for v in r.json()["data"] if v["name"] == "0002"]
    assert len(uploaded) == 1 and ("The train was late again.", uploaded[0]) in voices


def test_a_run_stopped_halfway_resumes_without_speaking_any_line_twice(
    dub_stack: Stack, tmp_path: Path
) -> None:
    items = cues(EXAMPLE)
    out = tmp_path / "track.wav"
    ledger = Path(f"{out}.dub.json")
    calls_before = engine_calls(dub_stack)
    hold = dub_stack.ledger / HOLD_FILE  # the engine stops after half the lines, till it goes
    hold.write_text(str(calls_before + len(items) // 2))
    args = [str(EXAMPLE), "--out", str(out), "--voice", "en", "--rate", str(RATE)]
    try:
        with open(tmp_path / "first.log", "w") as log:
            first = subprocess.Popen(
                dub_cmd(dub_stack, "bob", *args),
                env=clean_env(),
                cwd=REPO,
                stdout=log,
                stderr=log,
                # Ctrl-C as at a terminal, whatever this process inherited: a run started in
                # the background of a script (`make test &`) ignores SIGINT, and so would the
                # CLI, which Python then gives no KeyboardInterrupt (seen: the run went on).
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

        def half_done() -> bool:
            if not ledger.exists() or not json.loads(ledger.read_text())["batches"][0]["batch_id"]:
                return False
            batch_id = json.loads(ledger.read_text())["batches"][0]["batch_id"]
            r = httpx.get(
                f"{dub_stack.url}/v1/batches/{batch_id}", headers=dub_stack.headers("bob")
            )
            return bool(r.json()["counts"]["succeeded"] >= len(items) // 2)

        wait_for(half_done, 60, "half the lines to be done", every=0.05)
        first.send_signal(signal.SIGINT)
        assert first.wait(30) == 130
        assert "run the same command again to resume" in (tmp_path / "first.log").read_text()
        assert not out.exists()
        batch_id = json.loads(ledger.read_text())["batches"][0]["batch_id"]
        counts = httpx.get(
            f"{dub_stack.url}/v1/batches/{batch_id}", headers=dub_stack.headers("bob")
        ).json()["counts"]
        assert counts["succeeded"] < len(items), "the first run was not stopped halfway"
    finally:
        hold.unlink()  # the engine goes on
    second = dub(dub_stack, "bob", *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{len(items)} of {len(items)} lines" in second.stdout
    assert_placed(out, items)
    assert len(jobs_of(dub_stack, "bob")) == len(items), "a line was submitted twice"
    assert engine_calls(dub_stack) - calls_before == len(items), "a line was synthesised twice"


def test_a_failing_line_is_retried_once_then_named_and_left_silent(
    dub_stack: Stack, tmp_path: Path
) -> None:
    items = cues(EXAMPLE)
    bad = 5
    text = EXAMPLE.read_text().replace("Right here, in my bag.", f"{REJECT_MARK} words here.")
    srt = tmp_path / "film.srt"
    srt.write_text(text)
    out = tmp_path / "track.wav"
    args = ["--out", str(out), "--voice", "en", "--rate", str(RATE)]
    done = dub(dub_stack, "carol", str(srt), *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{len(items) - 1} of {len(items)} lines" in done.stdout
    assert re.search(rf"cue {bad}: job \w+ failed \(engine_rejected_input: ", done.stdout)
    samples, rate = read_wav(out)
    assert samples.shape[0] == round(items[-1][1] * rate / 1000)
    a, b = (round(ms * rate / 1000) for ms in items[bad - 1][:2])
    assert not samples[a:b].any(), "the failed line's slot is not silent"
    assert rms(samples[round(items[bad][0] * rate / 1000) : round(items[bad][1] * rate / 1000)])
    assert not (out.parent / "track.lines" / f"{bad:04d}.wav").exists()
    tries = [j for j in jobs_of(dub_stack, "carol") if REJECT_MARK in j["input"]["text"]]
    assert len(tries) == 2 and all(j["status"] == "failed" for j in tries)


def test_json_report_counts_lines_minutes_gpu_seconds_and_warnings(
    dub_stack: Stack, tmp_path: Path
) -> None:
    items = cues(EXAMPLE)
    out = tmp_path / "track.flac"
    done = dub(dub_stack, "dave", str(EXAMPLE), "--out", str(out), "--voice", "en", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["lines"] == report["succeeded"] == len(items)
    assert report["failed"] == []
    assert report["audio_minutes"] == pytest.approx(items[-1][1] / 60000, abs=0.001)
    assert 0 < report["speech_minutes"] <= report["audio_minutes"]
    assert report["gpu_seconds"] > 0
    assert report["loudness_lufs"] == pytest.approx(-23, abs=0.5)
    emotional = sum(1 for _, _, _, text in items if "{emo=" in text)
    emotion_warnings = [w for w in report["warnings"] if "emotion" in w["warning"]]
    assert len(emotion_warnings) == emotional  # eSpeak has no emotion: spoken, with a warning
    assert report["warning_count"] == len(report["warnings"])
    for w in emotion_warnings:
        assert f"cue {w['cue']}: warning: {w['warning']}" in done.stderr
    assert len(list((tmp_path / "track.lines").glob("*.flac"))) == len(items)


def test_an_output_folder_that_cannot_be_made_is_refused_before_anything_is_sent(
    dub_stack: Stack, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    before = len(jobs_of(dub_stack, "alice"))
    done = dub(dub_stack, "alice", str(EXAMPLE), "--out", str(tmp_path / "a-file" / "t.wav"))
    assert done.returncode == 2
    assert "cannot make the output folder" in done.stderr
    assert len(jobs_of(dub_stack, "alice")) == before
