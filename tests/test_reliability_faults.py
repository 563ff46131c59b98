"""Each fault injected for real, on loopback, bounded in time: no accepted job is lost.

A real SIGKILL, a real Redis restart, a real storage outage, a real SIGTERM. Each test builds
its own stack (own Redis, own S3 server) because it breaks things.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from common import keys
from common.broker import broker_job_ids
from tests.support.engines import calls
from tests.support.servers import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
MakeStack = Callable[..., Stack]


def probe() -> str:
    return uuid.uuid4().hex


def objects_for(stack: Stack, job_id: str) -> list[str]:
    return [key for key in stack.s3.objects() if job_id in key]  # type: ignore[union-attr]


def worker_logs(stack: Stack) -> str:
    return "".join(path.read_text() for path in (stack.tmp / "logs").glob("worker*.log"))


def upload_retries(stack: Stack) -> int:
    return (stack.tmp / "logs" / "io.log").read_text().count("retry in")


def wait_engine_ready(stack: Stack, workers: int = 1) -> None:
    def ready() -> bool:
        try:
            info = httpx.get(f"{stack.url}/v1/engine", headers=stack.headers(), timeout=2).json()
        except httpx.HTTPError:
            return False
        return sum(1 for w in info["workers"] if w["ready"]) >= workers

    wait_for(ready, 60, f"{workers} ready synthesis worker(s)", every=0.2)


def test_worker_sigkilled_mid_job_runs_it_again_and_it_succeeds_once(make_stack: MakeStack) -> None:
    # A short visibility timeout: the dead worker's unacked message comes back within the test.
    stack = make_stack(TTS_VISIBILITY_TIMEOUT_S="3").start()
    p = probe()
    job = stack.submit(text="survive a crash", metadata={"probe": p, "script": "sleep_once:4"})
    wait_for(lambda: calls(stack.ledger, p) == 1, 20, "the engine to start the job")
    stack.worker.kill()  # SIGKILL to the whole worker: parent and its prefork child
    stack.worker.start()
    done = stack.wait_end(job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and calls(stack.ledger, p) == 2
    assert objects_for(stack, job["id"]) == [f"audio/{job['id']}.wav"]
    # Its message was acked when the engine took it (`gpu_worker/pipeline.py`): the sweeper,
    # finding the worker that held it gone, sent it again.
    assert re.search(rf"\[job {job['id']}\] worker \S+ is gone; requeued", stack.logs())
    time.sleep(4)  # past the visibility timeout: no second delivery runs it again
    assert stack.get(job["id"])["status"] == "succeeded" and calls(stack.ledger, p) == 2


def test_worker_killed_after_synthesis_before_upload_loses_no_audio(make_stack: MakeStack) -> None:
    # The upload is the I/O worker's even for a worker with nothing else to do.
    stack = make_stack(TTS_UPLOAD_WHEN_IDLE="false")
    stack.api.start()
    stack.worker.start()  # no I/O worker yet: the audio waits in the hand-off
    wait_engine_ready(stack)
    p = probe()
    job = stack.submit(text="made once", metadata={"probe": p})
    stack.wait_status(job["id"], "running", stage="uploading")
    stack.worker.kill()
    stack.io.start()
    done = stack.wait_end(job["id"], timeout=30)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert calls(stack.ledger, p) == 1  # not synthesised again: the audio survived the worker
    assert objects_for(stack, job["id"]) == [f"audio/{job['id']}.wav"]


@pytest.mark.serial  # bounds the rescue in wall-clock seconds
def test_worker_killed_while_uploading_its_own_audio_loses_no_audio(make_stack: MakeStack) -> None:
    # One job at a time, the synthesis process makes the upload's first attempt itself
    # (`Synthesizer.upload_here`). Storage hangs (its server stopped: connections open, no
    # answer) and the worker dies in the attempt: once its heartbeat has expired (2 s here),
    # not its 60 s lease, the I/O worker uploads what the hand-off kept.
    stack = make_stack(TTS_UPLOAD_LEASE_S="60")
    stack.api.start()
    stack.worker.start()
    wait_engine_ready(stack)
    s3 = stack.s3.proc  # type: ignore[union-attr]
    s3.send_signal(signal.SIGSTOP)
    p = probe()
    job = stack.submit(text="uploaded by the dead", metadata={"probe": p})
    stack.wait_status(job["id"], "running", stage="uploading")
    stack.worker.kill()
    killed = time.monotonic()
    s3.send_signal(signal.SIGCONT)
    stack.io.start()
    done = stack.wait_end(job["id"], timeout=30)
    assert time.monotonic() - killed < 20  # the I/O worker's start included
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert calls(stack.ledger, p) == 1
    assert objects_for(stack, job["id"]) == [f"audio/{job['id']}.wav"]
    assert f"[job {job['id']}] upload stalled (worker synth@" in stack.logs()


def test_io_worker_killed_mid_upload_during_an_outage_still_delivers(make_stack: MakeStack) -> None:
    stack = make_stack(TTS_UPLOAD_MAX_ATTEMPTS="100").start()
    stack.s3.stop()  # type: ignore[union-attr]
    p = probe()
    job = stack.submit(text="upload me", metadata={"probe": p})
    stack.wait_status(job["id"], "running", stage="uploading")
    wait_for(lambda: upload_retries(stack) >= 2, 20, "failed upload attempts")
    stack.io.kill()  # the next attempt was waiting in the killed worker
    stack.s3.start()  # type: ignore[union-attr]
    stack.io.start()
    done = stack.wait_end(job["id"], timeout=40)
    assert done["status"] == "succeeded" and calls(stack.ledger, p) == 1
    assert objects_for(stack, job["id"]) == [f"audio/{job['id']}.wav"]


def test_redis_restart_keeps_queued_and_running_jobs_and_everyone_reconnects(
    make_stack: MakeStack,
) -> None:
    # A heartbeat TTL longer than the outage: the running job keeps its worker throughout.
    stack = make_stack(TTS_HEARTBEAT_TTL_S="15").start()
    running_probe = probe()
    running = stack.submit(text="running", metadata={"probe": running_probe, "script": "sleep:2"})
    stack.wait_status(running["id"], "running")
    queued = {
        stack.submit(text=f"queued {i}", metadata={"probe": probe()})["id"]: None for i in range(5)
    }
    stack.redis.restart(down_s=1.0)  # SIGTERM, then a new server on the same port and data
    for job_id in [running["id"], *queued]:
        done = stack.wait_end(job_id, timeout=60)
        assert done["status"] == "succeeded", done
        assert calls(stack.ledger, done["input"]["metadata"]["probe"]) == 1
    after = stack.submit(text="after the restart")  # the API reconnected by itself
    assert stack.wait_end(after["id"])["status"] == "succeeded"


def test_workers_take_jobs_again_after_only_their_pubsub_connections_are_cut(
    make_stack: MakeStack,
) -> None:
    """A cut that takes only the pub/sub connections (a proxy's idle timeout, CLIENT KILL):
    the workers' Celery consumers reconnect and take the next job. With redis-py's one retry
    (`retry_on_timeout`), the consumer's read reconnected by itself and then waited on the new
    connection for a message that never came: no job was taken again, and nothing was
    logged."""
    stack = make_stack().start()
    before = stack.submit(text="before the cut")
    assert stack.wait_end(before["id"])["status"] == "succeeded"
    client = redis.Redis.from_url(stack.redis.url)
    assert client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2  # both workers'
    after = stack.submit(text="after the cut", metadata={"probe": probe()})
    done = stack.wait_end(after["id"], timeout=30)
    assert done["status"] == "succeeded", done
    assert calls(stack.ledger, done["input"]["metadata"]["probe"]) == 1


class GoesSilent:
    """A TCP proxy to Redis whose `silence()` makes every connection open at that moment
    silent both ways, closing nothing: what a NAT or firewall that forgets a connection does
    to a GPU machine far from Redis. Connections made later are forwarded."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.era = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def silence(self) -> None:
        self.era += 1

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.redis_port))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst, self.era), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, era: int) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if self.era == era:  # else read and dropped: the sender hears nothing
                    dst.sendall(data)
        for end in (src, dst):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def test_jobs_run_again_after_every_connection_to_redis_went_silent(
    make_stack: MakeStack,
) -> None:
    """Every open connection to Redis goes silent, none closes. Celery's connections waited
    for ever: a synchronous command on the worker's consumer thread never returned, kombu's
    own check of its BRPOP never ran, and no job was taken again, with nothing logged. With a
    socket timeout and kombu's checks every `BROKER_HEALTH_CHECK_S`, each piece replaces its
    connections: a request answers up to `SOCKET_TIMEOUT_S` late, the worker takes jobs
    again within about half a minute, and each job is synthesised once. Heartbeats as
    deployed (20 s TTL)."""
    stack = make_stack(TTS_HEARTBEAT_INTERVAL_S="2", TTS_HEARTBEAT_TTL_S="20")
    proxy = GoesSilent(
        redis.Redis.from_url(stack.redis.url).connection_pool.connection_kwargs["port"]
    )
    stack.env["TTS_REDIS_URL"] = re.sub(r":\d+/", f":{proxy.port}/", stack.env["TTS_REDIS_URL"])
    stack.start()
    before = stack.submit(text="before the silence")
    assert stack.wait_end(before["id"])["status"] == "succeeded"
    proxy.silence()
    for text in ("after the silence", "and the next"):
        p = probe()
        r = httpx.post(
            f"{stack.url}/v1/jobs",
            json={"text": text, "metadata": {"probe": p}},
            headers=stack.headers(),
            timeout=60,  # the API's first round trip waits out one silent connection
        )
        assert r.status_code == 202, r.text
        done = stack.wait_end(r.json()["id"], timeout=60)
        assert done["status"] == "succeeded", done
        assert calls(stack.ledger, p) == 1


def test_storage_outage_is_retried_with_backoff_until_storage_returns(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(TTS_UPLOAD_MAX_ATTEMPTS="100").start()
    stack.s3.stop()  # type: ignore[union-attr]
    p = probe()
    job = stack.submit(text="patience", metadata={"probe": p})
    stack.wait_status(job["id"], "running", stage="uploading")
    wait_for(lambda: upload_retries(stack) >= 3, 20, "three failed upload attempts")
    assert stack.get(job["id"])["status"] == "running"
    stack.s3.start()  # type: ignore[union-attr]
    done = stack.wait_end(job["id"], timeout=30)
    assert done["status"] == "succeeded" and calls(stack.ledger, p) == 1
    assert httpx.get(done["audio"]["url"]).content[:4] == b"RIFF"
    io_log = (stack.tmp / "logs" / "io.log").read_text()
    assert "retry in" in io_log


def test_storage_down_past_the_limit_fails_the_job_with_a_clear_error(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(TTS_UPLOAD_MAX_ATTEMPTS="3").start()
    stack.s3.stop()  # type: ignore[union-attr]
    done = stack.wait_end(stack.submit(text="no storage")["id"], timeout=30)
    assert done["status"] == "failed"
    assert done["error"] == {
        "code": "storage_unavailable",
        "message": "storage did not accept the audio after 3 attempts",
        "retryable": True,  # the same request may succeed once storage is back
    }


def test_a_poison_job_fails_after_bounded_attempts_and_the_worker_carries_on(
    make_stack: MakeStack,
) -> None:
    stack = make_stack().start()
    p = probe()
    poison = stack.submit(text="poison", metadata={"probe": p, "script": "crash"})
    done = stack.wait_end(poison["id"], timeout=90)
    assert done["status"] == "failed" and done["error"]["code"] == "attempts_exhausted"
    assert calls(stack.ledger, p) == 3  # TTS_MAX_ATTEMPTS, then never again
    wait_engine_ready(stack)
    assert stack.wait_end(stack.submit(text="next")["id"])["status"] == "succeeded"
    client = redis.Redis.from_url(stack.env["TTS_REDIS_URL"])
    assert poison["id"] not in broker_job_ids(client, keys.SYNTH_QUEUE)  # nothing left to run it
    assert calls(stack.ledger, p) == 3


def test_a_job_longer_than_the_visibility_timeout_is_not_run_twice(make_stack: MakeStack) -> None:
    stack = make_stack(TTS_VISIBILITY_TIMEOUT_S="2").start()
    stack.add_worker()  # an idle second worker that receives the redelivered message
    wait_engine_ready(stack, workers=2)
    p = probe()
    job = stack.submit(text="slow line", metadata={"probe": p, "script": "sleep:6"})
    done = stack.wait_end(job["id"], timeout=40)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert calls(stack.ledger, p) == 1
    # Acked when the engine took it (`gpu_worker/pipeline.py`): there is nothing to redeliver.
    assert f"[job {job['id']}] skipped" not in worker_logs(stack)


def test_sigterm_lets_the_job_in_hand_finish_and_leaves_the_queue_intact(
    make_stack: MakeStack,
) -> None:
    stack = make_stack().start()
    probes = [probe() for _ in range(3)]
    first = stack.submit(text="finish me", metadata={"probe": probes[0], "script": "sleep:2"})
    stack.wait_status(first["id"], "running")
    # Claimed and prepared while the engine runs the first (`gpu_worker/pipeline.py`).
    second = stack.submit(text="in hand too", metadata={"probe": probes[1]})
    stack.wait_status(second["id"], "running")
    third = stack.submit(text="after restart", metadata={"probe": probes[2]})
    assert stack.worker.proc is not None
    stack.worker.proc.send_signal(signal.SIGTERM)  # what supervisor and systemd send
    stack.worker.proc.wait(30)
    assert stack.wait_end(first["id"])["status"] == "succeeded"
    assert stack.wait_end(second["id"])["status"] == "succeeded"
    assert stack.get(third["id"])["status"] == "queued"
    stack.worker.start()
    assert stack.wait_end(third["id"], timeout=30)["status"] == "succeeded"
    assert [calls(stack.ledger, p) for p in probes] == [1, 1, 1]


def test_jobs_and_audio_expire_after_the_ttl_and_nothing_else_goes(make_stack: MakeStack) -> None:
    stack = make_stack(TTS_JOB_TTL_S="4").start()
    old = stack.wait_end(stack.submit(text="old")["id"])
    ended = datetime.fromisoformat(old["finished_at"])
    wait_for(lambda: datetime.now(UTC) - ended > timedelta(seconds=2.5), 5, "a gap between jobs")
    new = stack.wait_end(stack.submit(text="new")["id"])

    def gone() -> bool:
        r = httpx.get(old["urls"]["self"], headers=stack.headers())
        return r.status_code == 404

    wait_for(gone, 10, "the old job to expire")
    assert objects_for(stack, old["id"]) == []
    assert stack.get(new["id"])["status"] == "succeeded"
    assert objects_for(stack, new["id"]) == [f"audio/{new['id']}.wav"]
    listed = httpx.get(f"{stack.url}/v1/jobs", headers=stack.headers()).json()["data"]
    assert [j["id"] for j in listed] == [new["id"]]
