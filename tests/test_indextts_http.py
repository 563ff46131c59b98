"""IndexTTS2 behind the whole stack: a job over HTTP reaches the (fake) upstream `infer()`
with exactly the values sent, and the audio it returns becomes the job's result in storage."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_worker.engines.indextts import IndexTTS2Engine
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import DB, Stack, wav_ok
from tests.test_indextts_engine import FAKE, make_model_dir

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def index_stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("index")
    model_dir = make_model_dir(tmp_path / "model", IndexTTS2Engine)
    voices = tmp_path / "data" / "voices"
    voices.mkdir(parents=True)
    from common.audio.wav import encode_wav
    from common.schemas.job_request import JobRequest
    from gpu_worker.engines.espeak import EspeakEngine

    espeak = EspeakEngine()
    for name, line in (("narrator", "This is the narrator."), ("angry", "Get out of here!")):
        out = espeak.synthesize(JobRequest(text=line))
        (voices / f"{name}.wav").write_bytes(encode_wav(out.pcm16, out.sample_rate))
    stack = Stack(
        tmp_path,
        redis_server,
        s3_server,
        db=DB["indextts_http"],
        TTS_BACKEND="index_tts2",
        INDEXTTS_MODEL_DIR=str(model_dir),
        INDEXTTS_USE_FP16="false",
        FAKE_INDEXTTS_LOG=str(tmp_path / "calls.jsonl"),
        PYTHONPATH=os.pathsep.join([str(FAKE), str(REPO)]),
    ).start()
    yield stack
    stack.stop()


def infer_calls(stack: Stack) -> list[dict[str, Any]]:
    lines = (stack.tmp / "calls.jsonl").read_text().splitlines()
    return [c for c in map(json.loads, lines) if c["event"] == "infer"]


def test_a_job_over_http_reaches_infer_with_exactly_its_controls(index_stack: Stack) -> None:
    body = {
        "text": "我们明天早上九点出发。",
        "voice": "narrator",
        "emotion": {
            "alpha": 0.8,
            "vector": {
                "happy": 0,
                "angry": 0,
                "sad": 0,
                "afraid": 0,
                "disgusted": 0,
                "melancholic": 0,
                "surprised": 0.6,
                "calm": 0.3,
            },
            "random": False,
        },
        "generation": {
            "temperature": 0.8,
            "top_p": 0.8,
            "top_k": 30,
            "num_beams": 3,
            "repetition_penalty": 10.0,
            "length_penalty": 0.0,
            "max_mel_tokens": 1500,
            "interval_silence": 200,
            "max_text_tokens_per_segment": 120,
        },
    }
    job = index_stack.submit(**body)
    done = index_stack.wait_end(job["id"])
    assert done["status"] == "succeeded", done
    call = infer_calls(index_stack)[-1]
    assert call["text"] == body["text"]
    narrator = (index_stack.tmp / "data" / "voices" / "narrator.wav").read_bytes()
    assert Path(call["spk_audio_prompt"]).read_bytes() == narrator
    assert Path(call["spk_audio_prompt"]).name == hashlib.sha256(narrator).hexdigest() + ".wav"
    assert call["emo_vector"] == [0, 0, 0, 0, 0, 0, 0.6, 0.3]
    assert (call["emo_alpha"], call["use_random"]) == (0.8, False)
    assert (call["interval_silence"], call["max_text_tokens_per_segment"]) == (200, 120)
    assert call["generation_kwargs"] == {
        k: body["generation"][k]
        for k in (  # type: ignore[index]
            "temperature",
            "top_p",
            "top_k",
            "num_beams",
            "repetition_penalty",
            "length_penalty",
            "max_mel_tokens",
        )
    }
    audio = httpx.get(done["audio"]["url"]).content
    assert hashlib.sha256(audio).hexdigest() == done["audio"]["sha256"]
    assert wav_ok(audio) > 1.0
    assert f"audio/{job['id']}.wav" in index_stack.s3.objects()  # type: ignore[union-attr]


def test_engine_route_lists_index_tts2_controls(index_stack: Stack) -> None:
    info = httpx.get(f"{index_stack.url}/v1/engine", headers=index_stack.headers()).json()
    caps = info["engines"][0]
    assert caps["engine"] == "index_tts2"
    assert set(caps["emotion"]) == {"audio", "alpha", "vector", "text", "random"}
    assert {"narrator", "angry", "default"} <= set(caps["voices"])
    assert "duration_factor" not in caps["generation"]
    worker = info["workers"][0]
    assert worker["ready"] and "indextts.infer_v2" in worker["model_version"]


def test_truncation_reaches_the_client_as_a_warning(index_stack: Stack) -> None:
    job = index_stack.submit(
        text="A long line that will not fit in fifty mel tokens at all.",
        generation={"max_mel_tokens": 50},
    )
    done = index_stack.wait_end(job["id"])
    assert done["status"] == "succeeded"
    assert "max_mel_tokens (50)" in done["warnings"][0]


def test_cuda_oom_fails_visibly_after_bounded_retries(index_stack: Stack) -> None:
    done = index_stack.wait_end(index_stack.submit(text="oom every time")["id"], timeout=60)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "transient_error"
    assert "CUDA out of memory" in done["error"]["message"] and done["attempts"] == 3
    assert len([c for c in infer_calls(index_stack) if c["text"] == "oom every time"]) == 3


def test_asking_2_5_only_controls_of_index_tts2_is_a_422(index_stack: Stack) -> None:
    r = httpx.post(
        f"{index_stack.url}/v1/jobs",
        headers=index_stack.headers(),
        json={"text": "hi", "generation": {"duration_factor": 1.2}},
    )
    assert r.status_code == 422
    assert "generation.duration_factor: not supported by index_tts2" in r.json()["error"]["message"]
