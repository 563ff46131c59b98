"""The job store's status changes against a real Redis server."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from common import keys
from common.errors import Conflict
from common.jobs.store import ClaimResult, JobStore
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobStatus, Stage

WAV = b"RIFF....WAVEfmt "


def alive(_: str) -> bool:
    return True


def dead(_: str) -> bool:
    return False


def test_a_new_job_is_queued_in_order(store: JobStore) -> None:
    a = store.create("o", JobRequest(text="a"))
    b = store.create("o", JobRequest(text="b"))
    assert (store.queue_position(a.id), store.queue_position(b.id)) == (0, 1)
    assert store.get(a.id).status == JobStatus.queued  # type: ignore[union-attr]


def test_a_second_delivery_is_skipped_while_the_first_worker_lives(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="a"))
    assert store.claim(job.id, "w1", is_alive=alive, max_attempts=3).result == ClaimResult.run
    assert store.claim(job.id, "w2", is_alive=alive, max_attempts=3).result == ClaimResult.skip
    assert store.get(job.id).attempts == 1  # type: ignore[union-attr]


def test_a_dead_workers_job_is_taken_over_and_counted(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="a"))
    store.claim(job.id, "w1", is_alive=alive, max_attempts=3)
    claim = store.claim(job.id, "w2", is_alive=dead, max_attempts=3)
    assert claim.result == ClaimResult.run and claim.job and claim.job.attempts == 2
    assert not store.mark_synthesized(job.id, "w1", WAV, synth_s=1, duration_s=1, warnings=[])


def test_a_job_started_too_often_fails_instead_of_looping(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="a"))
    for _ in range(2):
        assert store.claim(job.id, "w", is_alive=dead, max_attempts=2).result == ClaimResult.run
    claim = store.claim(job.id, "w", is_alive=dead, max_attempts=2)
    assert claim.result == ClaimResult.exhausted
    ended = store.get(job.id)
    assert ended and ended.status == JobStatus.failed and ended.error
    assert ended.error.code == "attempts_exhausted"


def test_synthesized_then_succeeded_once(store: JobStore) -> None:
    from common.audio.wav import encode_wav
    from common.schemas.jobs import AudioInfo

    job = store.create("o", JobRequest(text="a"))
    store.claim(job.id, "w", is_alive=alive, max_attempts=3)
    wav = encode_wav(b"\x00\x10" * 100, 22050)
    assert store.mark_synthesized(job.id, "w", wav, synth_s=0.5, duration_s=1.0, warnings=[])
    assert store.handoff_audio(job.id) == wav
    assert store.claim(job.id, "w2", is_alive=dead, max_attempts=3).result == ClaimResult.skip
    info = AudioInfo(
        key="audio/x.wav", sample_rate=22050, duration_s=0.0091, size_bytes=len(wav), sha256="0"
    )
    assert store.mark_succeeded(job.id, info)
    assert not store.mark_succeeded(job.id, info)
    assert store.handoff_audio(job.id) is None
    ended = store.get(job.id)
    assert ended and ended.status == JobStatus.succeeded and ended.metrics.rtf == 0.5


def test_cancel_of_a_running_job_makes_its_result_unwritable(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="a"))
    store.claim(job.id, "w", is_alive=alive, max_attempts=3)
    assert store.cancel(job.id, "o").status == JobStatus.canceled
    assert not store.mark_synthesized(job.id, "w", WAV, synth_s=1, duration_s=1, warnings=[])
    with pytest.raises(Conflict):
        store.cancel(job.id, "o")


def test_requeue_only_from_the_named_worker(store: JobStore) -> None:
    job = store.create("o", JobRequest(text="a"))
    store.claim(job.id, "w1", is_alive=alive, max_attempts=3)
    assert not store.requeue(job.id, only_from="someone-else")
    assert store.requeue(job.id, only_from="w1")
    requeued = store.get(job.id)
    assert requeued and requeued.status == JobStatus.queued and requeued.stage is None
    assert store.queue_position(job.id) == 0
    assert store.requeue(job.id, stage=Stage.uploading) is False


def counting_reads(store: JobStore) -> list[str]:
    """Record each read of a job's record by `store` (its client's GET)."""
    reads: list[str] = []
    get = store.redis.get

    def counted(name: str) -> object:
        reads.append(name)
        return get(name)

    store.redis.get = counted  # type: ignore[method-assign]
    return reads


def test_a_worker_changes_a_job_it_claimed_without_reading_it_again(store: JobStore) -> None:
    from common.schemas.jobs import AudioInfo

    job = store.create("o", JobRequest(text="a"))
    reads = counting_reads(store)
    store.claim(job.id, "w", is_alive=alive, max_attempts=3)
    assert len(reads) == 1  # the claim reads the record the API wrote
    assert store.mark_synthesized(job.id, "w", WAV, synth_s=1, duration_s=1, warnings=[])
    audio = AudioInfo(key="k", sample_rate=1, duration_s=1, size_bytes=1, sha256="0" * 64)
    ended = store.mark_succeeded(job.id, audio)
    assert ended is not None and ended.status == JobStatus.succeeded
    assert len(reads) == 1  # the hand-off and the end started from what the claim wrote


def test_a_change_made_elsewhere_since_this_process_wrote_the_job_is_not_overwritten(
    store: JobStore,
) -> None:
    job = store.create("o", JobRequest(text="a"))
    store.claim(job.id, "w", is_alive=alive, max_attempts=3)
    elsewhere = JobStore(store.redis, job_ttl_s=60)  # the API, canceling
    assert elsewhere.cancel(job.id, "o").status == JobStatus.canceled
    assert not store.mark_synthesized(job.id, "w", WAV, synth_s=1, duration_s=1, warnings=[])
    assert store.get(job.id).status == JobStatus.canceled  # type: ignore[union-attr]
    assert store.handoff_audio(job.id) is None


class LosesOneScriptReply:
    """A TCP proxy to Redis that, after forwarding the first `EVALSHA`, closes the client's
    connection instead of passing the reply back: the script ran, its caller never heard."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.asked, self.lost = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.redis_port))
            threading.Thread(target=self._ask, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answer, args=(upstream, client), daemon=True).start()

    def _ask(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"EVALSHA" in data and not self.lost.is_set():
                    self.asked.set()
                upstream.sendall(data)

    def _answer(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if self.asked.is_set() and not self.lost.is_set():
                    self.lost.set()  # the script's reply, never passed on
                    break
                client.sendall(data)
        for end in (client, upstream):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)  # wakes the other thread's recv, sends the FIN
            end.close()


def test_a_change_whose_reply_was_lost_is_not_made_twice(store: JobStore) -> None:
    """redis-py sends a command again when the connection drops before its reply: the claim's
    script ran once, and its second run answers that it did (not a second attempt counted)."""
    import redis

    from common.jobs.base import APPLY_IF_UNCHANGED

    job = store.create("o", JobRequest(text="a"))
    port = store.redis.connection_pool.connection_kwargs["port"]
    db = store.redis.connection_pool.connection_kwargs.get("db", 0)
    proxy = LosesOneScriptReply(port)
    client = redis.Redis(
        port=proxy.port,
        db=db,
        retry=redis.retry.Retry(redis.backoff.NoBackoff(), retries=2),
        retry_on_error=[redis.ConnectionError],
    )
    client.script_load(APPLY_IF_UNCHANGED)
    worker = JobStore(client, job_ttl_s=60)
    claim = worker.claim(job.id, "w", is_alive=alive, max_attempts=3)
    assert proxy.lost.is_set()  # the first reply was lost, and the command sent again
    assert claim.result == ClaimResult.run
    assert claim.job is not None and claim.job.attempts == 1
    assert store.get(job.id).attempts == 1  # type: ignore[union-attr]
    assert store.redis.zscore(keys.RUNNING, job.id) is not None
