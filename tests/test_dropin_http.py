"""The dubbing worker's TTS client, replayed exactly against ttsq: the drop-in `/synthesize`.

The client's behaviour (from the design card and its Go code): one POST per segment, several at
once, `X-Api-Key`, a 600 s timeout, the same request sent again after any answer but 200 (three
tries), then `audio_url` downloaded without the key, absolute or relative to the service. The
speaker prompt is served by a local HTTP server behind presigned-looking URLs whose query
string changes on every send. The engine is the fake IndexTTS2 (upstream's signatures), which
logs every `infer()` call.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import soundfile

from common.audio.wav import encode_wav
from common.netguard import Refused, checked_addresses, parse_cidrs
from common.schemas.job_request import JobRequest
from gpu_worker.engines.espeak import EspeakEngine
from gpu_worker.engines.indextts import IndexTTS2Engine
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import DB, KEYS, Stack
from tests.test_indextts_engine import FAKE, make_model_dir

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
KEY = KEYS["alice"]


@dataclass
class PromptServer:
    """Serves speaker prompts with an ETag; counts the bodies it sent, per path."""

    files: dict[str, bytes]
    downloads: dict[str, int] = field(default_factory=dict)

    def start(self) -> PromptServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                data = owner.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                etag = '"' + hashlib.md5(data).hexdigest() + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                owner.downloads[path] = owner.downloads.get(path, 0) + 1
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def presigned(self, path: str) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}{path}?X-Amz-Signature={uuid.uuid4().hex}"


def speech(text: str) -> bytes:
    out = EspeakEngine().synthesize(JobRequest(text=text))
    return encode_wav(out.pcm16, out.sample_rate)


@pytest.fixture(scope="module")
def prompts() -> Iterator[PromptServer]:
    server = PromptServer(
        {
            "/prompts/t1/speaker_1.wav": speech("This is the first speaker's own voice."),
            "/prompts/t1/speaker_2.wav": speech("And here is a second speaker."),
            "/prompts/t1/not_audio.wav": b"<html>an error page</html>",
        }
    ).start()
    yield server
    server.server.shutdown()


def index_stack(
    tmp: Path, redis: RedisServer, s3: S3Server, db: int, delay_s: float, **overrides: str
) -> Stack:
    model_dir = make_model_dir(tmp / "model", IndexTTS2Engine)
    return Stack(
        tmp,
        redis,
        s3,
        db=db,
        TTS_BACKEND="index_tts2",
        INDEXTTS_MODEL_DIR=str(model_dir),
        INDEXTTS_USE_FP16="false",
        FAKE_INDEXTTS_LOG=str(tmp / "calls.jsonl"),
        FAKE_INDEXTTS_DELAY_S=str(delay_s),
        TTS_FETCH_ALLOW_CIDRS="127.0.0.0/8",
        PYTHONPATH=os.pathsep.join([str(FAKE), str(REPO)]),
        **overrides,
    ).start()


@pytest.fixture(scope="module")
def dub(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    stack = index_stack(tmp_path_factory.mktemp("dropin"), redis_server, s3_server, DB["dropin"], 0)
    yield stack
    stack.stop()


def infer_texts(stack: Stack) -> list[str]:
    path = stack.tmp / "calls.jsonl"
    calls = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [c["text"] for c in calls if c["event"] == "infer"]


def infer_calls(stack: Stack) -> list[dict[str, Any]]:
    path = stack.tmp / "calls.jsonl"
    return [c for c in map(json.loads, path.read_text().splitlines()) if c["event"] == "infer"]


@dataclass
class Delivered:
    answer: dict[str, Any]
    audio: bytes
    tries: int


def dubbing_client(base: str, body: dict[str, Any], tries: int = 3) -> Delivered:
    """What the dubbing worker's Go client does for one segment."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Api-Key": KEY,
    }
    last = None
    for attempt in range(1, tries + 1):
        r = httpx.post(f"{base}/synthesize", content=json.dumps(body), headers=headers, timeout=600)
        if r.status_code == 200:
            answer = r.json()
            audio = httpx.get(urljoin(base + "/", answer["audio_url"]), timeout=60)
            assert audio.status_code == 200, audio.text
            return Delivered(answer, audio.content, attempt)
        last = r
    raise AssertionError(f"segment failed after {tries} tries: {last and last.text}")


def measured(data: bytes) -> tuple[float, int]:
    samples, rate = soundfile.read(io.BytesIO(data))
    return len(samples) / rate, rate


def segment(prompts: PromptServer, text: str, target_ms: int, **more: Any) -> dict[str, Any]:
    return {
        "text": text,
        "speaker_id": "speaker_1",
        "prompt_audio_url": prompts.presigned("/prompts/t1/speaker_1.wav"),
        "target_duration_ms": target_ms,
        "language": "en",
        "prosody_control": {"speed": 1.0},
        "output_format": "wav",
        "sample_rate": 22050,
        **more,
    }


@pytest.mark.timeout(180)
def test_four_segments_at_once_each_fit_their_slot_and_run_once(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    s3_server: S3Server,
    prompts: PromptServer,
) -> None:
    # 5 s a segment on one worker: the fourth waits over 15 s, past the longest wait any other
    # route holds an answer (TTS_MAX_WAIT_S, 60 s by default, 10 s here), as a real GPU line
    # of 16 s segments waits past 60 s: /synthesize holds its answer until the job ends.
    stack = index_stack(
        tmp_path_factory.mktemp("slow"),
        redis_server,
        s3_server,
        DB["dropin_slow"],
        5,
        TTS_MAX_WAIT_S="10",
    )
    try:
        lines = [
            ("Hello and welcome to today's show.", 2400),
            ("We have a lot to talk about.", 1800),
            ("First, the weather across the country.", 2600),
            ("Then a word from our sponsors.", 2100),
        ]
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            done = list(
                pool.map(lambda line: dubbing_client(stack.url, segment(prompts, *line)), lines)
            )
        assert time.monotonic() - started > 15  # the last answer was held past the 10 s cap
        for (text, target_ms), got in zip(lines, done, strict=True):
            seconds, rate = measured(got.audio)
            assert rate == 22050 and got.answer["sample_rate"] == 22050
            assert abs(seconds * 1000 - target_ms) <= 0.02 * target_ms, (text, seconds)
            assert got.answer["format"] == "wav" and got.answer["file_size"] == len(got.audio)
            assert got.tries == 1
        texts = [text for text, _ in lines]
        assert sorted(t for t in infer_texts(stack) if t in texts) == sorted(texts)  # once each
        speaker = {c["spk_audio_prompt"] for c in infer_calls(stack) if c["text"] in texts}
        assert len(speaker) == 1
        served = prompts.files["/prompts/t1/speaker_1.wav"]
        assert Path(speaker.pop()).read_bytes() == served  # the engine heard the prompt itself
    finally:
        stack.stop()


def test_a_retried_request_joins_its_job_and_the_engine_runs_once(
    dub: Stack, prompts: PromptServer
) -> None:
    body = segment(prompts, f"Say this once, {uuid.uuid4().hex[:6]}.", 2000)
    first = dubbing_client(dub.url, body)
    again = dubbing_client(
        dub.url, {**body, "prompt_audio_url": prompts.presigned("/prompts/t1/speaker_1.wav")}
    )
    assert hashlib.sha256(first.audio).digest() == hashlib.sha256(again.audio).digest()
    assert infer_texts(dub).count(body["text"]) == 1


def test_one_speakers_audio_behind_new_presigned_urls_is_fetched_once(
    dub: Stack, prompts: PromptServer
) -> None:
    path = "/prompts/t1/speaker_2.wav"
    before = prompts.downloads.get(path, 0)
    for i in range(3):
        body = segment(prompts, f"Line {i} for speaker two.", 1500)
        body["prompt_audio_url"] = prompts.presigned(path)
        dubbing_client(dub.url, body)
    assert prompts.downloads[path] - before == 1


def test_accept_audio_answers_with_the_audio_itself(dub: Stack, prompts: PromptServer) -> None:
    body = segment(prompts, "Straight to the bytes.", 1600)
    r = httpx.post(
        f"{dub.url}/synthesize",
        json=body,
        headers={"X-Api-Key": KEY, "Accept": "audio/wav"},
        timeout=120,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    seconds, rate = measured(r.content)
    assert rate == 22050 and abs(seconds - 1.6) <= 0.032


def test_mp3_at_another_rate_decodes(dub: Stack, prompts: PromptServer) -> None:
    got = dubbing_client(
        dub.url, segment(prompts, "An MP3 this time.", 1500, output_format="mp3", sample_rate=44100)
    )
    assert got.answer["format"] == "mp3" and got.audio[:2] in (b"ID", b"\xff\xfb", b"\xff\xf3")
    seconds, rate = measured(got.audio)
    assert rate == 44100 and abs(seconds - 1.5) <= 0.03


def test_a_target_beyond_the_stretch_limit_says_by_how_much_it_missed(
    dub: Stack, prompts: PromptServer
) -> None:
    text = f"Far too short a slot {uuid.uuid4().hex[:6]}."
    got = dubbing_client(dub.url, segment(prompts, text, 300))
    seconds, _ = measured(got.audio)
    assert seconds > 0.45  # capped at 1.5x faster, not squeezed into 0.3 s
    jobs = httpx.get(f"{dub.url}/v1/jobs", headers={"X-Api-Key": KEY}).json()["data"]
    job = next(j for j in jobs if j["input"]["text"] == text)
    assert any("beyond the limit of 1.5x" in w for w in job["warnings"]), job["warnings"]


def test_a_timed_script_places_each_segment_at_its_start(dub: Stack, prompts: PromptServer) -> None:
    body = segment(prompts, "A scene.", 4000)
    body["time_constraints"] = {
        "segments": [
            {"text": "First line.", "target_duration_ms": 1200, "start_time_ms": 0},
            {"text": "Second line, later.", "target_duration_ms": 1500, "start_time_ms": 2000},
        ]
    }
    got = dubbing_client(dub.url, body)
    samples, rate = soundfile.read(io.BytesIO(got.audio))
    assert abs(len(samples) / rate - 4.0) <= 0.08
    gap = samples[int(1.3 * rate) : int(1.9 * rate)]
    assert abs(gap).max() < 0.01  # silence between the two slots
    assert abs(samples[int(2.1 * rate) : int(3.4 * rate)]).max() > 0.05


def test_each_drop_in_request_is_a_ttsq_job(dub: Stack, prompts: PromptServer) -> None:
    text = f"Listed like any job {uuid.uuid4().hex[:6]}."
    dubbing_client(dub.url, segment(prompts, text, 1500))
    jobs = httpx.get(f"{dub.url}/v1/jobs", headers={"X-Api-Key": KEY}).json()["data"]
    job = next(j for j in jobs if j["input"]["text"] == text)
    assert job["status"] == "succeeded" and job["input"]["metadata"]["speaker_id"] == "speaker_1"
    assert job["audio"]["stretch"] is not None and job["metrics"]["synth_s"] is not None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": ""}, "text"),
        ({"prosody_control": {"speed": 3.0}}, "prosody_control.speed"),
        ({"target_duration_ms": 0}, "target_duration_ms"),
        ({"output_format": "ogg"}, "output_format"),
        ({"sample_rate": 96000}, "sample_rate"),
        ({"prompt_audio_url": "ftp://example.com/a.wav"}, "prompt_audio_url"),
        ({"prompt_audio_url": "http://10.0.0.1/a.wav"}, "prompt_audio_url"),
        ({"prompt_audio_url": "http://169.254.169.254/latest/meta-data"}, "prompt_audio_url"),
        ({"prompt_audio_url": "http://[::1]/a.wav"}, "prompt_audio_url"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    dub: Stack, prompts: PromptServer, change: dict[str, Any], field: str
) -> None:
    r = httpx.post(
        f"{dub.url}/synthesize",
        json={**segment(prompts, "Fine text.", 1000), **change},
        headers={"X-Api-Key": KEY},
    )
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]["message"]


def test_unknown_fields_are_ignored_and_the_running_backend_is_accepted(
    dub: Stack, prompts: PromptServer
) -> None:
    body = segment(prompts, "Extra fields are fine.", 1200, tts_backend="index_tts2", extra=1)
    assert dubbing_client(dub.url, body).answer["format"] == "wav"


def test_another_tts_backend_is_spoken_by_the_running_one_with_a_warning(
    dub: Stack, prompts: PromptServer
) -> None:
    # Once a 400 (final for the dubbing client): the segment can still be spoken.
    body = segment(prompts, "Any backend will do.", 1200, tts_backend="cosyvoice")
    r = httpx.post(f"{dub.url}/synthesize", json=body, headers={"X-Api-Key": KEY}, timeout=60)
    assert r.status_code == 200, r.text
    assert any("tts_backend: 'cosyvoice'" in w for w in r.json()["warnings"])
    assert "cosyvoice" in r.headers["x-tts-warnings"]


def test_a_prompt_that_is_not_audio_fails_naming_the_host(
    dub: Stack, prompts: PromptServer
) -> None:
    body = segment(prompts, "My prompt is broken.", 1200)
    body["prompt_audio_url"] = prompts.presigned("/prompts/t1/not_audio.wav")
    r = httpx.post(f"{dub.url}/synthesize", json=body, headers={"X-Api-Key": KEY}, timeout=60)
    assert r.status_code == 422
    assert "127.0.0.1" in r.json()["error"]["message"]


def test_a_missing_key_is_a_401(dub: Stack, prompts: PromptServer) -> None:
    r = httpx.post(f"{dub.url}/synthesize", json=segment(prompts, "No key.", 1000))
    assert r.status_code == 401


def test_health_speaks_the_original_fields_without_a_key(dub: Stack) -> None:
    health = httpx.get(f"{dub.url}/health").json()
    assert health["status"] == "healthy" and health["model_loaded"] is True
    assert health["backend"] == "index_tts2" and health["index_tts2_loaded"] is True
    assert set(health) == {"status", "model_loaded", "backend", "index_tts2_loaded", "message"}


def test_speakers_lists_the_voices(dub: Stack) -> None:
    speakers = httpx.get(f"{dub.url}/speakers", headers={"X-Api-Key": KEY}).json()["speakers"]
    assert {"id": "default", "name": "default", "language": None, "gender": None} in speakers


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.wav",
        "http://10.0.0.1/a.wav",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.wav",
        "http://localhost/a.wav",  # a name that resolves to loopback
        "http://[::ffff:127.0.0.1]/a.wav",
    ],
)
def test_the_guard_refuses_non_public_addresses_unless_allowed(url: str) -> None:
    with pytest.raises(Refused):
        checked_addresses(url, [])
    if "169.254" not in url and "10.0" not in url:
        checked_addresses(url, parse_cidrs("127.0.0.0/8,::1/128"))


def test_a_batch_gives_each_segment_and_the_merged_track(dub: Stack, prompts: PromptServer) -> None:
    lines = [("Part one of the scene.", 1500), ("And part two of it.", 1400)]
    r = httpx.post(
        f"{dub.url}/synthesize/batch",
        json={"requests": [segment(prompts, *line) for line in lines], "merge": True},
        headers={"X-Api-Key": KEY},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [s["idx"] for s in answer["segments"]] == [0, 1]
    for (_, target_ms), seg in zip(lines, answer["segments"], strict=True):
        audio = httpx.get(urljoin(dub.url + "/", seg["audio_url"])).content
        assert abs(measured(audio)[0] * 1000 - target_ms) <= 0.02 * target_ms
    merged = httpx.get(urljoin(dub.url + "/", answer["audio_url"])).content
    assert abs(measured(merged)[0] * 1000 - 2900) <= 0.02 * 2900
    assert answer["duration_ms"] == sum(s["duration_ms"] for s in answer["segments"])


def test_a_bad_batch_item_is_a_400_naming_its_index(dub: Stack, prompts: PromptServer) -> None:
    body = {"requests": [segment(prompts, "Fine.", 1000), segment(prompts, "", 1000)]}
    r = httpx.post(f"{dub.url}/synthesize/batch", json=body, headers={"X-Api-Key": KEY})
    assert r.status_code == 400 and "requests.1.text" in r.json()["error"]["message"]
