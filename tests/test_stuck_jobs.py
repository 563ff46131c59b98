"""No accepted job ends up stuck: the hardening issue's reproductions, run for real.

A worker whose engine cannot start, an I/O worker whose storage is down at start, Redis
SIGKILLed just after a claim and during an upload burst, a message Redis forgot. Each test
builds its own stack (own Redis and S3 server processes) and restarts nothing by hand but the
fault it injects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis

from common import keys
from tests.support.engines import calls
from tests.support.servers import REPO, Piece, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
MakeStack = Callable[..., Stack]
FAST_SWEEP = {"TTS_STUCK_GRACE_S": "2", "TTS_UPLOAD_LEASE_S": "5"}


def probe() -> str:
    return uuid.uuid4().hex


def ended_once(stack: Stack, job_id: str, timeout: float = 60) -> dict[str, object]:
    done = stack.wait_end(job_id, timeout=timeout)
    assert done["status"] == "succeeded", done
    keys_for_job = [k for k in stack.s3.objects() if job_id in k]  # type: ignore[union-attr]
    assert keys_for_job == [f"audio/{job_id}.wav"]
    return done


def broken_worker(stack: Stack, mode: str) -> Piece:
    env = {**stack.env, "TTS_BACKEND": "tests.support.engines:BrokenEngine"}
    env["TTS_TEST_BROKEN"] = mode
    return Piece("worker", env, stack.tmp / "logs" / f"broken-{mode}.log")


@pytest.mark.parametrize("mode", ["build", "warmup"])
def test_a_worker_whose_engine_cannot_start_exits_with_the_reason_and_takes_no_job(
    make_stack: MakeStack, mode: str
) -> None:
    stack = make_stack(**FAST_SWEEP)
    stack.api.start()
    stack.io.start()
    stack.wait_api()
    p = probe()
    job = stack.submit(text="wait for a good worker", metadata={"probe": p})
    broken = broken_worker(stack, mode).start()
    assert broken.proc is not None
    code = broken.proc.wait(60)
    log = broken.log.read_text()
    assert code != 0
    assert "failed to start" in log and "scripted" in log, log[-3000:]
    assert stack.get(job["id"])["status"] == "queued"
    assert stack.get(job["id"])["attempts"] == 0
    stack.worker.start()
    assert ended_once(stack, job["id"])["attempts"] == 1
    assert calls(stack.ledger, p) == 1


def test_an_io_worker_with_storage_down_at_start_exits_with_the_reason(
    make_stack: MakeStack,
) -> None:
    stack = make_stack()
    stack.s3.stop()  # type: ignore[union-attr]
    stack.io.start()
    assert stack.io.proc is not None
    assert stack.io.proc.wait(60) != 0
    assert "storage is not usable" in stack.io.log.read_text()
    stack.s3.start()  # type: ignore[union-attr]
    stack.start()
    ended_once(stack, stack.submit(text="storage is back")["id"])


def test_redis_killed_just_after_a_claim_the_job_still_ends_once(make_stack: MakeStack) -> None:
    stack = make_stack(TTS_HEARTBEAT_TTL_S="30", **FAST_SWEEP).start()
    p = probe()
    job = stack.submit(text="claimed, then Redis dies", metadata={"probe": p, "script": "sleep:2"})
    stack.wait_status(job["id"], "running")
    # The job is on file (a job accepted in Redis's last unsynced second is not promised:
    # docs/RELIABILITY.md); its claim may or may not be.
    stack.redis.wait_written(job["id"])
    stack.redis.kill()  # SIGKILL: the write Redis held back is lost
    time.sleep(12)  # longer than the clients' own reconnect retries
    stack.redis.start()
    ended_once(stack, job["id"], timeout=90)
    assert 1 <= calls(stack.ledger, p) <= 2
    for piece in (stack.api, stack.worker, stack.io):
        assert piece.alive(), stack.logs()


@pytest.mark.timeout(300)  # a minute's outage, then a burst of 40 jobs to finish
def test_redis_killed_for_a_minute_during_a_burst_every_job_ends_once(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(**FAST_SWEEP).start()
    jobs = [stack.submit(text=f"line {i}", metadata={"probe": probe()})["id"] for i in range(40)]
    wait_for(
        lambda: sum(stack.get(j)["status"] == "succeeded" for j in jobs) >= 5,
        60,
        "the burst to be under way",
    )
    stack.redis.wait_written(jobs[-1])  # the file is in order: every job of the burst is on it
    stack.redis.kill()
    time.sleep(61)  # every process must ride out an outage of a minute
    stack.redis.start()
    for job_id in jobs:
        done = stack.wait_end(job_id, timeout=120)
        # Every job Redis remembers ends once (each is on file: see wait_written).
        assert done["status"] == "succeeded", done
    for piece in (stack.api, stack.worker, stack.io):
        assert piece.alive(), stack.logs()


def test_a_queued_job_whose_message_was_lost_is_sent_again_and_runs_once(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(**FAST_SWEEP)
    stack.api.start()
    stack.io.start()
    stack.wait_api()
    p = probe()
    job = stack.submit(text="my message is gone", metadata={"probe": p})
    client = redis.Redis.from_url(stack.env["TTS_REDIS_URL"])
    wait_for(lambda: client.llen(keys.SYNTH_QUEUE) == 1, 10, "the message")
    client.delete(keys.SYNTH_QUEUE)  # what a Redis killed mid-write can forget
    stack.worker.start()
    assert ended_once(stack, job["id"], timeout=60)["attempts"] == 1
    assert calls(stack.ledger, p) == 1
    assert client.hget(keys.SWEEP_COUNTS, "orphaned") == b"1"
    assert f"[job {job['id']}] queued with no message" in stack.io.log.read_text()


def test_two_workers_on_one_host_have_their_own_node_names(make_stack: MakeStack) -> None:
    stack = make_stack().start()
    stack.add_worker()
    from common.broker import make_celery
    from common.settings import Settings

    app = make_celery(Settings(redis_url=stack.env["TTS_REDIS_URL"]))

    def synth_nodes() -> list[str]:
        replies = app.control.inspect(timeout=1).ping() or {}
        return sorted(n for n in replies if n.startswith("synth"))

    nodes = wait_for(lambda: len(synth_nodes()) == 2 and synth_nodes(), 30, "two synth nodes")
    assert len(set(nodes)) == 2


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ttsq.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("piece", ["api", "worker", "io"])
def test_a_piece_started_without_redis_says_so_and_exits(piece: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    unset = run_cli(piece, env=env)
    assert unset.returncode != 0 and "TTS_REDIS_URL is not set" in unset.stderr
    env["TTS_REDIS_URL"] = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    started = time.monotonic()
    unreachable = run_cli(piece, env=env)
    assert unreachable.returncode != 0 and "cannot reach Redis" in unreachable.stderr
    assert time.monotonic() - started < 45


def test_a_voice_added_while_the_worker_runs_is_usable_without_a_restart(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(TTS_BACKEND="tests.support.engines:VoiceDirEngine").start()
    voices = stack.tmp / "data" / "voices"
    voices.mkdir(parents=True, exist_ok=True)
    (voices / "narrator.wav").write_bytes(b"RIFF")  # the engine only lists the names

    def listed() -> bool:
        info = httpx.get(f"{stack.url}/v1/engine", headers=stack.headers()).json()
        return any("narrator" in e["voices"] for e in info["engines"])

    wait_for(listed, 10, "the new voice in GET /v1/engine")
    ended_once(stack, stack.submit(text="a new voice", voice="narrator")["id"])
