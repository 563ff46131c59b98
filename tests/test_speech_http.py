"""OpenAI's speech API and index-tts-vllm's `/tts_url` against the real stack on eSpeak.

The OpenAI calls go through the official `openai` package, with only `base_url` and `api_key`
changed, as a user of it would; the other contracts through plain HTTP. Every request must be an
ordinary ttsq job, and what eSpeak cannot do (OpenAI's voice names, a speaker file on another
server, emotions) must still answer 200, with the reason in `X-TTS-Warnings`.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import numpy as np
import openai
import pytest
import soundfile

from common.audio.codec import encode, from_pcm16
from common.schemas.job_request import JobRequest
from gpu_worker.engines.espeak import EspeakEngine
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import DB, KEYS, Stack

pytestmark = pytest.mark.integration
KEY = KEYS["alice"]


@pytest.fixture(scope="module")
def sp(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("speech"),
        redis_server,
        s3_server,
        db=DB["speech"],
        TTS_BACKEND="espeak",
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def client(sp: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sp.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def unique(text: str) -> str:
    # Each test speaks its own text, so that no request joins another test's job.
    return f"{text} {uuid.uuid4().hex[:6]}"


def speech_energy(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert len(samples) > rate // 2, "less than half a second of audio"
    assert speech_energy(samples) > 0.01, "the audio is silent"
    return samples, int(rate)


def post(stack: Stack, path: str, body: dict[str, Any], key: str = KEY) -> httpx.Response:
    return httpx.post(
        f"{stack.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def warnings_of(r: Any) -> str:
    value = r.headers.get("x-tts-warnings", "")
    assert value.isascii()
    return unquote(value)


def job_of(stack: Stack, r: Any) -> dict[str, Any]:
    return stack.get(r.headers["x-tts-job-id"])


def upload_voice(stack: Stack, name: str) -> str:
    out = EspeakEngine().synthesize(JobRequest(text="This is the voice I uploaded for the test."))
    wav = encode(from_pcm16(out.pcm16), out.sample_rate, "wav")
    r = httpx.post(
        f"{stack.url}/v1/voices",
        headers=stack.headers(),
        files={"file": ("voice.wav", wav, "audio/wav")},
        data={"name": name},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def test_the_openai_client_gets_a_wav_with_speech_in_the_default_voice(
    sp: Stack, client: openai.OpenAI
) -> None:
    text = unique("Hello from the official OpenAI client.")
    answer = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="wav"
    )
    assert answer.response.headers["content-type"] == "audio/wav"
    decoded(answer.content)
    assert "voice: 'alloy' is not a voice here; the default voice spoke" in warnings_of(
        answer.response
    )
    job = job_of(sp, answer.response)
    assert job["status"] == "succeeded" and job["input"]["text"] == text
    assert job["input"]["voice"] is None and job["input"]["on_unsupported"] == "ignore"
    assert job["input"]["metadata"] == {"route": "audio/speech", "model": "tts-1", "voice": "alloy"}


def test_the_openai_default_is_mp3(sp: Stack, client: openai.OpenAI) -> None:
    answer = client.audio.speech.create(
        model="IndexTTS-2", voice="en", input=unique("An MP3, as OpenAI answers by default.")
    )
    assert answer.response.headers["content-type"] == "audio/mpeg"
    decoded(answer.content)
    assert "x-tts-warnings" not in answer.response.headers  # `en` is an eSpeak voice


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("flac", "audio/flac"), ("opus", "audio/ogg; codecs=opus"), ("pcm", "audio/pcm")],
)
def test_each_other_format_decodes(sp: Stack, fmt: str, content_type: str) -> None:
    body = {
        "model": "tts-1",
        "voice": "en",
        "input": unique("Another format."),
        "response_format": fmt,
    }
    r = post(sp, "/v1/audio/speech", body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == content_type
    if fmt == "pcm":  # raw 16-bit little-endian at 24 kHz, as OpenAI's
        assert len(r.content) % 2 == 0 and r.content[:4] != b"RIFF"
        samples = from_pcm16(r.content)
        assert len(samples) > 12000 and speech_energy(samples) > 0.01
    else:
        decoded(r.content)


def test_index_tts_vllm_v1s_path_answers_wav_by_default(sp: Stack) -> None:
    r = post(sp, "/audio/speech", {"model": "tts-1", "input": unique("The v1 path."), "voice": "x"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    decoded(r.content)
    assert "voice: 'x' is not a voice here" in warnings_of(r)
    assert job_of(sp, r)["input"]["metadata"]["route"] == "audio/speech"


def test_instructions_and_speed_are_honoured_or_named(sp: Stack) -> None:
    text = unique("Spoken a little faster than usual.")
    body = {"model": "tts-1", "voice": "en", "input": text, "speed": 1.5, "instructions": "Happy"}
    r = post(sp, "/v1/audio/speech", {**body, "response_format": "wav"})
    assert r.status_code == 200, r.text
    decoded(r.content)
    assert "instructions: ignored" in warnings_of(r)
    assert job_of(sp, r)["input"]["speed"] == 1.5


def test_a_non_ascii_voice_name_is_percent_encoded_in_the_warning(sp: Stack) -> None:
    r = post(sp, "/v1/audio/speech", {"model": "tts-1", "voice": "声音", "input": unique("Hi.")})
    assert r.status_code == 200, r.text
    assert "%E5%A3%B0" in r.headers["x-tts-warnings"]
    assert "voice: '声音' is not a voice here" in warnings_of(r)


def test_an_uploaded_voice_is_named_by_name_or_id(sp: Stack) -> None:
    voice_id = upload_voice(sp, "narrator")
    for name in ("narrator", voice_id):
        r = post(sp, "/v1/audio/speech", {"model": "tts-1", "voice": name, "input": unique("Me.")})
        assert r.status_code == 200, r.text
        assert "is not a voice here" not in warnings_of(r)
        assert job_of(sp, r)["input"]["voice"] == voice_id
    r = post(sp, "/v1/audio/speech", {"model": "tts-1", "voice": {"id": voice_id}, "input": "Hi"})
    assert r.status_code == 200 and job_of(sp, r)["input"]["voice"] == voice_id


def test_the_voice_list_has_the_engines_voices_and_the_keys_own(sp: Stack) -> None:
    voice_id = upload_voice(sp, "listed voice")
    r = httpx.get(f"{sp.url}/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    voices = r.json()["voices"]
    assert {"id": "en", "name": "en"} in voices
    assert {"id": voice_id, "name": "listed voice"} in voices
    other = httpx.get(f"{sp.url}/v1/audio/voices", headers=sp.headers("bob")).json()["voices"]
    assert voice_id not in {v["id"] for v in other}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"model": "tts-1", "voice": "alloy", "input": ""}, "input"),
        ({"model": "tts-1", "voice": "alloy", "input": "   "}, "input"),
        ({"model": "tts-1", "voice": "alloy"}, "input: required"),
        ({"model": "tts-1", "voice": "alloy", "input": "Hi", "speed": 10}, "speed"),
        ({"model": "tts-1", "voice": "alloy", "input": "Hi", "speed": 3}, "speed: 3 is outside"),
        ({"model": "tts-1", "voice": "a", "input": "Hi", "response_format": "aac"}, "'pcm'"),
        ({"model": "tts-1", "voice": "a", "input": "Hi", "stream_format": "sse"}, "stream_format"),
        ({"model": "tts-1", "voice": "a", "input": "。。。"}, "input: no letter or digit"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(sp: Stack, body: dict[str, Any], named: str) -> None:
    r = post(sp, "/v1/audio/speech", body)
    assert r.status_code == 400, r.text
    assert named in r.json()["error"]["message"]


def test_the_openai_client_sees_bad_input_as_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi", speed=10)
    assert "speed" in str(raised.value)


def test_a_missing_or_wrong_key_is_a_401(sp: Stack) -> None:
    r = httpx.post(f"{sp.url}/v1/audio/speech", json={"input": "Hi"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{sp.url}/v1", api_key="wrong", max_retries=0).audio.speech.create(
            model="tts-1", voice="alloy", input="Hi"
        )


def test_a_retry_of_the_same_body_joins_the_first_job(sp: Stack) -> None:
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": unique("Sent twice."),
        "response_format": "wav",
    }
    first, second = post(sp, "/v1/audio/speech", body), post(sp, "/v1/audio/speech", body)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-tts-job-id"] == second.headers["x-tts-job-id"]
    assert first.content == second.content
    r = httpx.get(f"{sp.url}/v1/jobs?limit=100", headers=sp.headers(), timeout=10)
    assert [j["id"] for j in r.json()["data"] if j["input"]["text"] == body["input"]] == [
        first.headers["x-tts-job-id"]
    ]
    # Another key's identical body is its own job.
    other = post(sp, "/v1/audio/speech", body, key=KEYS["bob"])
    assert (
        other.status_code == 200 and other.headers["x-tts-job-id"] != first.headers["x-tts-job-id"]
    )


def tts_url_body(text: str, **more: Any) -> dict[str, Any]:
    """What index-tts-vllm v2's example client sends: every field, defaults included."""
    return {
        "text": text,
        "spk_audio_path": "/root/index-tts-vllm/examples/voice_01.wav",
        "emo_control_method": 0,
        "emo_ref_path": None,
        "emo_weight": 1.0,
        "emo_vec": [0.0] * 8,
        "emo_text": None,
        "emo_random": False,
        "max_text_tokens_per_sentence": 120,
        **more,
    }


def test_tts_url_speaks_in_the_uploaded_voice_its_path_names(sp: Stack) -> None:
    voice_id = upload_voice(sp, "voice_01")
    r = post(sp, "/tts_url", tts_url_body(unique("In my own uploaded voice.")))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    decoded(r.content)
    assert "spk_audio_path" not in warnings_of(r)
    job = job_of(sp, r)
    assert job["input"]["voice"] == voice_id and job["input"]["on_unsupported"] == "ignore"
    assert job["input"]["metadata"]["route"] == "tts_url"


def test_tts_url_with_a_path_naming_nothing_speaks_the_default_voice(sp: Stack) -> None:
    body = tts_url_body(unique("Nobody's voice."), spk_audio_path="/srv/nobody/jay_promptvn.wav")
    r = post(sp, "/tts_url", body)
    assert r.status_code == 200, r.text
    decoded(r.content)
    warned = warnings_of(r)
    assert "spk_audio_path: '/srv/nobody/jay_promptvn.wav' names no voice here" in warned
    assert job_of(sp, r)["input"]["voice"] is None


def test_tts_url_emotions_eSpeak_lacks_are_dropped_with_a_warning(sp: Stack) -> None:
    vector = [0.0, 0.0, 0.55, 0.0, 0.0, 0.0, 0.0, 0.0]
    body = tts_url_body(unique("Sad, if it could."), emo_control_method=2, emo_vec=vector)
    r = post(sp, "/tts_url", body)
    assert r.status_code == 200, r.text
    decoded(r.content)
    assert "emotion.vector" in warnings_of(r)


@pytest.mark.parametrize(
    ("more", "named"),
    [
        ({"text": ""}, "text"),
        ({"emo_control_method": 4}, "emo_control_method"),
        (
            {"emo_control_method": 2, "emo_vec": [0.6, 0.6, 0, 0, 0, 0, 0, 0]},
            "emo_vec: the weights",
        ),
        ({"emo_vec": [0.0] * 7}, "emo_vec"),
        ({"emo_control_method": 1}, "emo_ref_path: required"),
        ({"emo_weight": 2}, "emo_weight"),
    ],
)
def test_tts_url_bad_input_is_a_400_naming_the_field(
    sp: Stack, more: dict[str, Any], named: str
) -> None:
    r = post(sp, "/tts_url", {**tts_url_body("Hi"), **more})
    assert r.status_code == 400, r.text
    assert named in r.json()["error"]["message"]


def test_synthesize_with_a_speaker_id_espeak_lacks_speaks_the_default_voice_and_says_so(
    sp: Stack,
) -> None:
    # `speaker_1` names no voice here: once a 400, which the dubbing client never retries.
    body = {"text": "Any voice will do.", "speaker_id": "speaker_1", "output_format": "wav"}
    r = httpx.post(
        f"{sp.url}/synthesize",
        json=body,
        headers={"Accept": "audio/wav", "Authorization": _basic("dub", KEY)},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    decoded(r.content)
    assert "voice: 'speaker_1'" in r.headers["x-tts-warnings"]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
