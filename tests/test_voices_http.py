"""Each key's voice library over HTTP: upload in every format, use in jobs on two workers (each
with its own cache, filled from storage), list, delete, refusals, and other keys kept out.

The engine is the fake IndexTTS2 (upstream's signatures), which logs each `infer()` call's
speaker and emotion prompt paths; storage is a real S3-protocol server.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
import soxr

from common.audio.codec import encode, from_pcm16
from common.schemas.job_request import JobRequest
from gpu_worker.engines.espeak import EspeakEngine
from tests.support.servers import Piece, RedisServer, S3Server, wait_for
from tests.support.stack import DB, Stack
from tests.test_dropin_http import index_stack, infer_calls

pytestmark = pytest.mark.integration


def speech(text: str) -> tuple[np.ndarray, int]:
    out = EspeakEngine().synthesize(JobRequest(text=text))
    return from_pcm16(out.pcm16), out.sample_rate


def as_format(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    if fmt == "wav":
        return encode(samples, rate, "wav")
    if fmt == "mp3":
        return encode(samples, rate, "mp3")
    buf = io.BytesIO()
    if fmt == "flac":
        soundfile.write(buf, samples, rate, format="FLAC")
    elif fmt == "vorbis":
        soundfile.write(buf, samples, rate, format="OGG", subtype="VORBIS")
    else:  # Opus carries 8, 12, 16, 24 or 48 kHz
        soundfile.write(buf, soxr.resample(samples, rate, 24000), 24000, "OPUS", format="OGG")
    return buf.getvalue()


FORMATS = ("wav", "flac", "mp3", "vorbis", "opus")


@pytest.fixture(scope="module")
def vs(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("voices")
    stack = index_stack(tmp, redis_server, s3_server, DB["voices"], 0.3)
    # A second GPU machine: its own data dir, so its own voice cache, filled from storage.
    other = Piece("worker", {**stack.env, "TTS_DATA_DIR": str(tmp / "data2")}, tmp / "w2.log")
    stack.extra_workers.append(other.start())

    def two_ready() -> bool:
        r = httpx.get(f"{stack.url}/v1/engine", headers=stack.headers(), timeout=5)
        return sum(1 for w in r.json()["workers"] if w["ready"]) == 2

    wait_for(two_ready, 120, "the second worker to be ready")
    yield stack
    stack.stop()


def upload(
    stack: Stack, data: bytes, name: str = "v", owner: str = "alice", **extra: str
) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/v1/voices",
        headers=stack.headers(owner),
        files={"file": ("voice.bin", data, "application/octet-stream")},
        data={"name": name, **extra},
        timeout=30,
    )


def voice_objects(s3: S3Server) -> set[str]:
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="voices/")
    return {o["Key"] for o in listed.get("Contents", [])}


def own_voice_ids(stack: Stack, owner: str = "alice") -> set[str]:
    r = httpx.get(f"{stack.url}/v1/voices?limit=100", headers=stack.headers(owner), timeout=10)
    assert r.status_code == 200, r.text
    return {v["id"] for v in r.json()["data"] if not v["shared"]}


def test_a_voice_in_each_format_speaks_jobs_on_two_workers(vs: Stack, s3_server: S3Server) -> None:
    voices: dict[str, dict[str, Any]] = {}
    for fmt in FORMATS:
        samples, rate = speech(f"This is the {fmt} narrator, speaking for the voice library.")
        r = upload(vs, as_format(samples, rate, fmt), name=f"narrator {fmt}")
        assert r.status_code == 201, (fmt, r.text)
        voices[fmt] = r.json()
        assert voices[fmt]["name"] == f"narrator {fmt}"
        assert abs(voices[fmt]["duration_s"] - len(samples) / rate) < 0.2, (fmt, voices[fmt])
        assert f"voices/{voices[fmt]['sha256']}.wav" in voice_objects(s3_server)
    assert len({v["id"] for v in voices.values()}) == len(FORMATS)
    assert own_voice_ids(vs) >= {v["id"] for v in voices.values()}

    jobs = [
        vs.submit(text=f"line {i} of the scene", voice=voices[FORMATS[i % len(FORMATS)]]["id"])
        for i in range(10)
    ]
    emo = vs.submit(
        text="an angry line", voice=voices["wav"]["id"], emotion={"audio": voices["flac"]["id"]}
    )
    for job in [*jobs, emo]:
        assert vs.wait_end(job["id"])["status"] == "succeeded"
    calls = {c["text"]: c for c in infer_calls(vs)}
    used_dirs = set()
    for i, job in enumerate(jobs):
        prompt = Path(calls[f"line {i} of the scene"]["spk_audio_prompt"])
        assert prompt.stem == voices[FORMATS[i % len(FORMATS)]]["sha256"]
        used_dirs.add(prompt.parent.parent.name)
    assert used_dirs == {"data", "data2"}, "both workers spoke in the uploaded voices"
    assert Path(calls["an angry line"]["emo_audio_prompt"]).stem == voices["flac"]["sha256"]


def test_the_same_audio_twice_is_one_voice(vs: Stack) -> None:
    samples, rate = speech("Twice uploaded, once kept.")
    first = upload(vs, as_format(samples, rate, "wav"), name="twice")
    again = upload(vs, as_format(samples, rate, "wav"), name="twice")
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert first.json()["id"] == again.json()["id"]
    # FLAC is lossless: the same samples, so the same voice.
    flac = upload(vs, as_format(samples, rate, "flac"), name="twice")
    assert flac.status_code == 200 and flac.json()["id"] == first.json()["id"]
    listed = httpx.get(f"{vs.url}/v1/voices?limit=100", headers=vs.headers(), timeout=10).json()
    assert [v["id"] for v in listed["data"]].count(first.json()["id"]) == 1


def _tone(seconds: float, rate: int = 16000, amplitude: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return encode((amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, "wav")


@pytest.mark.parametrize(
    ("data", "status", "code", "says"),
    [
        (b"<html>an error page</html>" * 40, 422, "not_audio", "not a readable"),
        (_tone(3, amplitude=0.0), 422, "silent_audio", "silent"),
        (_tone(0.5), 422, "voice_too_short", "1 s"),
        (_tone(61, rate=8000), 422, "voice_too_long", "60 s"),
    ],
    ids=["not_audio", "silent", "too_short", "too_long"],
)
def test_a_bad_upload_is_refused_and_nothing_is_stored(
    vs: Stack, s3_server: S3Server, data: bytes, status: int, code: str, says: str
) -> None:
    before_objects, before_ids = voice_objects(s3_server), own_voice_ids(vs)
    r = upload(vs, data, name="bad")
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and says in r.json()["error"]["message"]
    assert voice_objects(s3_server) == before_objects
    assert own_voice_ids(vs) == before_ids


def test_bad_form_fields_are_refused(vs: Stack) -> None:
    wav = _tone(2)
    r = upload(vs, wav, name="m", metadata="[1, 2]")
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("metadata:")
    r = httpx.post(
        f"{vs.url}/v1/voices",
        headers=vs.headers(),
        data={"name": "x"},
        files={"recording": ("a.wav", wav)},
        timeout=10,
    )
    assert r.status_code == 422 and "file: required" in r.json()["error"]["message"]
    r = upload(vs, wav, name="   ")
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("name:")
    r = httpx.post(f"{vs.url}/v1/voices", headers=vs.headers(), json={"name": "x"}, timeout=10)
    assert r.status_code == 415


def test_a_long_prompt_is_kept_with_a_warning(vs: Stack) -> None:
    r = upload(vs, _tone(20, rate=8000), name="long")
    assert r.status_code == 201, r.text
    assert any("first 15 s" in w for w in r.json()["warnings"])


def test_an_upload_over_the_limit_is_refused_before_its_body_is_read(vs: Stack) -> None:
    size = 10 * 1024 * 1024 + 200 * 1024
    head = (
        f"POST /v1/voices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {vs.headers()['X-Api-Key']}"
        f"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {size}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", vs.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"--b\r\n" + b"\0" * 65536)  # a sliver of the body
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "payload_too_large"


def test_a_voice_belongs_to_the_key_that_made_it(vs: Stack) -> None:
    samples, rate = speech("Alice's private voice.")
    voice = upload(vs, as_format(samples, rate, "flac"), name="alice only").json()
    vid = voice["id"]
    for method in ("GET", "DELETE"):
        r = httpx.request(method, f"{vs.url}/v1/voices/{vid}", headers=vs.headers("bob"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "voice_not_found"
    assert vid not in own_voice_ids(vs, "bob")
    r = httpx.post(
        f"{vs.url}/v1/jobs", json={"text": "hi", "voice": vid}, headers=vs.headers("bob")
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "voice_not_found"
    r = httpx.post(
        f"{vs.url}/v1/jobs",
        json={"text": "hi", "emotion": {"audio": vid}},
        headers=vs.headers("bob"),
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "voice_not_found"
    for owner, sees in (("alice", True), ("bob", False)):
        engine = httpx.get(f"{vs.url}/v1/engine", headers=vs.headers(owner)).json()
        assert (vid in engine["engines"][0]["voices"]) is sees
        speakers = httpx.get(f"{vs.url}/speakers", headers=vs.headers(owner)).json()
        assert (vid in {s["id"] for s in speakers["speakers"]}) is sees
    assert httpx.get(f"{vs.url}/v1/voices/{vid}", headers=vs.headers()).status_code == 200


def test_shared_voices_are_listed_for_every_key(vs: Stack) -> None:
    for owner in ("alice", "bob"):
        listed = httpx.get(f"{vs.url}/v1/voices", headers=vs.headers(owner)).json()["data"]
        assert {"id": "default", "shared": True}.items() <= next(
            v for v in listed if v["id"] == "default"
        ).items()
    r = httpx.delete(f"{vs.url}/v1/voices/default", headers=vs.headers())
    assert r.status_code == 409 and r.json()["error"]["code"] == "voice_shared"


def test_voices_page_like_jobs(vs: Stack) -> None:
    made = set()
    for i in range(3):
        r = upload(vs, _tone(1.5 + i / 10), name=f"page {i}", owner="carol")
        made.add(r.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{vs.url}/v1/voices", params=params, headers=vs.headers("carol")).json()
        seen += [v["id"] for v in page["data"] if not v["shared"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 3


def test_a_deleted_voice_is_gone_and_its_queued_jobs_end(vs: Stack, s3_server: S3Server) -> None:
    samples, rate = speech("A voice that will be deleted.")
    voice = upload(vs, as_format(samples, rate, "wav"), name="doomed", owner="dave").json()
    busy = [vs.submit("dave", text=f"filler {i}") for i in range(6)]
    waiting = [vs.submit("dave", text=f"doomed {i}", voice=voice["id"]) for i in range(2)]
    r = httpx.delete(f"{vs.url}/v1/voices/{voice['id']}", headers=vs.headers("dave"))
    assert r.status_code == 204
    for job in waiting:
        ended = vs.wait_end(job["id"], owner="dave")
        assert ended["status"] == "succeeded" or ended["error"]["code"] == "voice_not_found"
    for job in busy:
        vs.wait_end(job["id"], owner="dave")
    assert (
        httpx.get(f"{vs.url}/v1/voices/{voice['id']}", headers=vs.headers("dave")).status_code
        == 404
    )
    assert f"voices/{voice['sha256']}.wav" not in voice_objects(s3_server)
    r = httpx.post(
        f"{vs.url}/v1/jobs", json={"text": "hi", "voice": voice["id"]}, headers=vs.headers("dave")
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "voice_not_found"


def test_the_same_audio_from_two_keys_outlives_one_delete(vs: Stack, s3_server: S3Server) -> None:
    wav = _tone(2.5, amplitude=0.25)
    mine = upload(vs, wav, name="both", owner="alice").json()
    theirs = upload(vs, wav, name="both", owner="bob").json()
    assert mine["id"] != theirs["id"] and mine["sha256"] == theirs["sha256"]
    assert httpx.delete(f"{vs.url}/v1/voices/{mine['id']}", headers=vs.headers()).status_code == 204
    assert f"voices/{mine['sha256']}.wav" in voice_objects(s3_server)
    job = vs.submit("bob", text="still mine", voice=theirs["id"])
    assert vs.wait_end(job["id"], owner="bob")["status"] == "succeeded"


def test_hash_of_stored_audio_is_its_name(vs: Stack, s3_server: S3Server) -> None:
    voice = upload(vs, _tone(1.2), name="hashed").json()
    body = s3_server.client().get_object(
        Bucket=s3_server.bucket, Key=f"voices/{voice['sha256']}.wav"
    )
    assert hashlib.sha256(body["Body"].read()).hexdigest() == voice["sha256"]
