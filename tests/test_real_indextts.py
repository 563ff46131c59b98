"""The real upstream IndexTTS2 code (PyPI's tts-webui-index-tts 2.0.1) behind the whole stack.

`ttsq worker` runs in `.venv-indextts` (`make indextts-venv`) with TTS_BACKEND=index_tts2 on a
model dir of tiny random weights that tools/tiny_indextts.py builds here in seconds; the API, the
I/O worker, Redis and the S3 server are the usual ones. Random weights make noise, not speech,
but a planted stop token makes every segment exactly CODES codes long, so the audio's length
shows what the model was asked: 1.72 mel frames per code, 256 samples per frame.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import Piece, RedisServer, S3Server, wait_for
from tests.support.stack import DB, Stack, wav_ok

# The first test of the module (on each xdist worker) also waits ~90 s for `real_stack`.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[1]
IVENV_PYTHON = REPO / ".venv-indextts" / "bin" / "python"
CODES = 80
SEGMENT_SAMPLES = int(CODES * 1.72) * 256


class RealWorker(Piece):
    """`ttsq worker` on the real-engine venv's interpreter, started from the repo root (a
    working directory that is not the model's)."""

    def start(self) -> Piece:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(IVENV_PYTHON), "-m", "ttsq.cli", self.command],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert IVENV_PYTHON.exists(), "the real-engine venv is missing: run `make indextts-venv`"
    out = tmp_path_factory.mktemp("tiny") / "model"
    subprocess.run(
        [
            str(IVENV_PYTHON),
            str(REPO / "tools" / "tiny_indextts.py"),
            str(out),
            "--codes",
            str(CODES),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture(scope="module")
def real_stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    s3_server: S3Server,
    tiny_model: Path,
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("real")
    voices = tmp / "data" / "voices"
    voices.mkdir(parents=True)
    from common.audio.wav import encode_wav
    from common.schemas.job_request import JobRequest
    from gpu_worker.engines.espeak import EspeakEngine

    for name, line in (("narrator", "This is the narrator."), ("angry", "Get out of here!")):
        out = EspeakEngine().synthesize(JobRequest(text=line))
        (voices / f"{name}.wav").write_bytes(encode_wav(out.pcm16, out.sample_rate))
    stack = Stack(
        tmp,
        redis_server,
        s3_server,
        db=DB["real_indextts"],
        TTS_BACKEND="index_tts2",
        INDEXTTS_MODEL_DIR=str(tiny_model),
        INDEXTTS_USE_FP16="false",
        INDEXTTS_DEVICE="cpu",
        TTS_HEARTBEAT_TTL_S="60",  # a CPU job on 2 busy cores can outlast the default
        TTS_VISIBILITY_TIMEOUT_S="600",
        TTS_ENGINE_BATCH="4",  # jobs that wait while the engine runs go through together
    )
    stack.worker = RealWorker("worker", stack.env, tmp / "logs" / "worker.log")
    for piece in (stack.api, stack.worker, stack.io):
        piece.start()
    try:
        stack.wait_ready(timeout=400)  # first start builds the normaliser's rules (~1 min)
    except AssertionError:
        stack.stop()
        raise AssertionError(stack.logs()) from None
    yield stack
    stack.stop()


def audio_of(stack: Stack, job: dict[str, object], timeout: float = 180) -> tuple[dict, bytes]:
    done = stack.wait_end(str(job["id"]), timeout=timeout)
    assert done["status"] == "succeeded", (done, stack.logs())
    audio = httpx.get(done["audio"]["url"], timeout=10).content
    assert hashlib.sha256(audio).hexdigest() == done["audio"]["sha256"]
    return done, audio


def samples(audio: bytes) -> int:
    import io
    import wave

    with wave.open(io.BytesIO(audio)) as w:
        return w.getnframes()


def test_the_worker_reports_the_real_package_and_is_ready(real_stack: Stack) -> None:
    info = httpx.get(f"{real_stack.url}/v1/engine", headers=real_stack.headers()).json()
    worker = info["workers"][0]
    assert worker["ready"]
    assert f" {installed_indextts_version()} (indextts.infer_v2)" in worker["model_version"]
    assert "weights tiny-random" in worker["model_version"]
    caps = info["engines"][0]
    assert set(caps["emotion"]) == {"audio", "alpha", "vector", "text", "random"}
    assert "interval_silence" in caps["generation"]


def installed_indextts_version() -> str:
    """The version of whichever distribution provides `indextts` in the real venv, as its
    metadata says (asked by package, not by a list of names the engine might also hold)."""
    code = (
        "from importlib import metadata\n"
        "print(metadata.version(metadata.packages_distributions()['indextts'][0]))"
    )
    out = subprocess.run([str(IVENV_PYTHON), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip(), out.stderr
    return out.stdout.strip()


def test_plain_text_becomes_one_segment_of_audio(real_stack: Stack) -> None:
    done, audio = audio_of(real_stack, real_stack.submit(text="你好世界。"))
    assert samples(audio) == SEGMENT_SAMPLES and not done["warnings"]
    assert wav_ok(audio) > 0.5
    assert f"audio/{done['id']}.wav" in real_stack.s3.objects()  # type: ignore[union-attr]


def test_segmenting_and_silence_controls_reach_the_model(real_stack: Stack) -> None:
    text = "HELLO WORLD, THIS IS A TEST OF THE QUICK BROWN FOX. " * 3
    body = {
        "text": text,
        "voice": "narrator",
        "emotion": {
            "vector": {
                "happy": 0.5,
                "angry": 0,
                "sad": 0,
                "afraid": 0,
                "disgusted": 0,
                "melancholic": 0,
                "surprised": 0,
                "calm": 0.2,
            },
            "alpha": 0.9,
            "random": True,
        },
        "generation": {
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 20,
            "num_beams": 1,
            "repetition_penalty": 8.0,
            "length_penalty": 0.0,
            "max_mel_tokens": 200,
            "interval_silence": 500,
            "max_text_tokens_per_segment": 20,
        },
    }
    _, audio = audio_of(real_stack, real_stack.submit(**body))
    segments = round(samples(audio) / (SEGMENT_SAMPLES + 0.5 * 22050))
    assert segments >= 2
    silence = int(22050 * 500 / 1000)
    assert samples(audio) == segments * SEGMENT_SAMPLES + (segments - 1) * silence
    assert wav_ok(audio) > 1.0


def test_a_long_text_shows_segments_done_while_it_runs(real_stack: Stack) -> None:
    text = "HELLO WORLD, THIS IS A TEST OF THE QUICK BROWN FOX. " * 4
    generation = {"max_text_tokens_per_segment": 20, "interval_silence": 0}
    job = real_stack.submit(text=text, generation=generation)
    looks: list[dict[str, Any]] = []
    real_stack.wait_end(job["id"], timeout=180, every=0.05, watch=looks.append)
    seen = [look["progress"] for look in looks if look["progress"] is not None]
    done, audio = audio_of(real_stack, job)
    segments = samples(audio) // SEGMENT_SAMPLES
    assert samples(audio) == segments * SEGMENT_SAMPLES and segments >= 3
    # upstream says "speech synthesis k/n" as segment k starts: k - 1 of n are done
    assert seen and {p["total"] for p in seen} == {segments}, seen
    finished = [p["done"] for p in seen]
    assert finished == sorted(finished) and max(finished) < segments and len(set(finished)) > 1
    assert done["progress"] is None


def test_an_emotion_reference_audio_is_used(real_stack: Stack) -> None:
    _, audio = audio_of(
        real_stack,
        real_stack.submit(text="生气", voice="narrator", emotion={"audio": "angry", "alpha": 0.6}),
    )
    assert samples(audio) == SEGMENT_SAMPLES


def test_an_emotion_text_goes_through_the_qwen_emotion_model(real_stack: Stack) -> None:
    _, audio = audio_of(
        real_stack, real_stack.submit(text="惊讶", emotion={"text": "surprised and relieved"})
    )
    assert samples(audio) == SEGMENT_SAMPLES


def test_a_job_that_hits_max_mel_tokens_succeeds_with_a_warning(real_stack: Stack) -> None:
    done, audio = audio_of(
        real_stack, real_stack.submit(text="你好世界。", generation={"max_mel_tokens": 50})
    )
    assert done["attempts"] == 1
    assert len(done["warnings"]) == 1 and "max_mel_tokens (50)" in done["warnings"][0]
    # Cut at the limit (the stop forced last), well short of the planted stop's CODES codes.
    assert int(45 * 1.72) * 256 <= samples(audio) <= int(50 * 1.72) * 256 < SEGMENT_SAMPLES
    assert wav_ok(audio) > 0.2


def test_jobs_that_wait_together_go_through_the_engine_together(real_stack: Stack) -> None:
    jobs = [
        real_stack.submit(text="第一句。"),
        real_stack.submit(text="The second line.", voice="narrator"),
        real_stack.submit(text="第三句，用另一个声音。", voice="angry"),
        real_stack.submit(text="A fourth line, cut short.", generation={"max_mel_tokens": 50}),
        real_stack.submit(text="The fifth line.", emotion={"vector": {"sad": 0.5}}),
    ]
    ends = [audio_of(real_stack, job) for job in jobs]
    lengths = [samples(audio) for _, audio in ends]
    assert lengths[:3] == [SEGMENT_SAMPLES] * 3 and lengths[4] == SEGMENT_SAMPLES
    assert lengths[3] < SEGMENT_SAMPLES and "max_mel_tokens (50)" in ends[3][0]["warnings"][0]
    assert all(not done["warnings"] for i, (done, _) in enumerate(ends) if i != 3)
    # The first is taken alone; the others wait for it, and share one GPT stage.
    log = (real_stack.tmp / "logs" / "worker.log").read_text()
    batches = re.findall(r"GPT stage: (\d+) segments in one batch", log)
    assert batches and max(map(int, batches)) >= 2, log[-4000:]


def test_batched_codes_and_audio_equal_unbatched_on_the_real_code(
    real_stack: Stack, tiny_model: Path
) -> None:
    """Same requests one by one and all at once (two speakers of different lengths, an
    emotion vector, an emotion reference, a line with settings of its own cut at the limit, an
    unknown voice), deterministic decoding: the same codes, the same audio to a sample's LSB."""
    data = Path(real_stack.env["TTS_DATA_DIR"])  # holds the worker's built normaliser rules
    run = subprocess.run(
        [
            str(IVENV_PYTHON),
            str(REPO / "tests/support/indextts_batched.py"),
            str(tiny_model),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["largest_batch"] == 4  # the four lines that share settings
    assert report["batched_codes"] == report["single_codes"]
    items = report["items"]
    for item in items[:5]:
        assert item["samples"][0] == item["samples"][1] and item["max_diff"] <= 2, item
    assert items[4]["warnings"][0] == items[4]["warnings"][1] != []
    assert items[5]["single"] == items[5]["batched"] and "nobody" in items[5]["batched"]


def test_the_gpu_run_script_dry_runs_on_the_cpu(
    real_stack: Stack, tiny_model: Path, tmp_path: Path
) -> None:
    """bench/gpu_run.sh --cpu: every step of the GPU run, small, on the CPU (the module's
    tiny weights and the worker's built normaliser rules stand in for its first two minutes)."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "model").symlink_to(tiny_model)
    cache = Path(real_stack.env["TTS_DATA_DIR"]) / "indextts-tagger-cache"
    shutil.copytree(cache, work / "data" / cache.name)
    out = tmp_path / "gpu_run.json"
    run = subprocess.run(
        ["bash", str(REPO / "bench/gpu_run.sh"), "--cpu", "--out", str(out)],
        env={**os.environ, "WORK": str(work)},
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    engine = report["engine"]["fp32"]
    assert engine["direct"]["rtf"] > 0 and engine["direct"]["gpt_tokens_per_s"] > 0
    assert set(engine["batched"]) == {"1", "2"}
    assert all(b["audio_s_per_engine_s"] > 0 for b in engine["batched"].values())
    queue = report["queue_batch_2"]
    assert queue["engine_batch"] == 2 and queue["queue"]["jobs"] == 2
    assert queue["direct"]["engine"] == "index_tts2"


def test_punctuation_only_text_is_refused_by_the_api_before_any_engine(real_stack: Stack) -> None:
    # Real 2.0.1 would make (random) sound of "…" or "!!!"; the API refuses such text first.
    r = httpx.post(f"{real_stack.url}/v1/jobs", json={"text": "…"}, headers=real_stack.headers())
    assert r.status_code == 422 and r.json()["error"]["code"] == "text_not_speakable"


def test_a_model_dir_missing_a_piece_stops_the_worker_naming_it(
    real_stack: Stack, tiny_model: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_model, broken, symlinks=True, copy_function=os.link)
    # Gone from both layouts: the one 2.0.1 reads (the hub cache) and newer upstream's (flat).
    campplus = broken / "hf_cache/models--funasr--campplus/snapshots" / ("0" * 40)
    (campplus / "campplus_cn_common.bin").unlink()
    (broken / "hf_cache" / "campplus_cn_common.bin").unlink(missing_ok=True)
    env = {**real_stack.env, "INDEXTTS_MODEL_DIR": str(broken)}
    worker = RealWorker("worker", env, tmp_path / "broken-worker.log").start()
    try:
        wait_for(lambda: not worker.alive(), 120, "the worker to stop")
    finally:
        worker.stop()
    log = (tmp_path / "broken-worker.log").read_text()
    assert worker.proc is not None and worker.proc.returncode != 0
    assert "ttsq worker: index_tts2: the model dir" in log and "lacks" in log
    assert "campplus_cn_common.bin" in log
