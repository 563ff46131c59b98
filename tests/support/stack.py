"""A whole ttsq stack for one test (or a session): API, synthesis worker, I/O worker."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import Piece, RedisServer, S3Server, free_port, wait_for

KEYS = {
    "alice": "key-alice-0123456789",
    "bob": "key-bob-0123456789",
    "carol": "key-carol-0123",
    "dave": "key-dave-0123",
}
TERMINAL = {"succeeded", "failed", "canceled"}
#: The session Redis's databases (Redis has 16), one per stack or store that shares it: two on
#: one database read each other's jobs (seen: one test file listing an owner's jobs found
#: another file's, once `make test` ran them in one process in a new order).
DB = {
    "stack": 0,
    "indextts_http": 1,
    "dropin": 2,
    "real_indextts": 3,
    "priority": 4,
    "result_cache": 5,
    "batches": 6,
    "dropin_slow": 7,
    "metrics": 8,
    "store": 9,
    "api_hardening": 10,
    "slow_clients": 11,
    "voices": 12,
    "speech": 13,
    "cli_dub": 14,
    "worker_lifecycle": 15,
}
assert sorted(DB.values()) == list(range(len(DB))) and len(DB) <= 16


class Stack:
    def __init__(
        self,
        tmp: Path,
        redis: RedisServer,
        s3: S3Server | None,
        *,
        db: int = 0,
        **overrides: str,
    ) -> None:
        self.tmp, self.redis, self.s3 = tmp, redis, s3
        self.port = free_port()
        self.ledger = tmp / "ledger"
        self.ledger.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "INDEXTTS_"))}
        env.update(
            {
                "TTS_HOST": "127.0.0.1",
                "TTS_PORT": str(self.port),
                "TTS_REDIS_URL": redis.url.removesuffix("/0") + f"/{db}",
                "TTS_API_KEYS": ",".join(f"{name}:{key}" for name, key in KEYS.items()),
                "TTS_DATA_DIR": str(tmp / "data"),
                "TTS_BACKEND": "tests.support.engines:ScriptedEngine",
                "TTS_TEST_LEDGER_DIR": str(self.ledger),
                "TTS_HEARTBEAT_INTERVAL_S": "0.5",
                "TTS_HEARTBEAT_TTL_S": "2",
                "TTS_SWEEP_INTERVAL_S": "0.5",
                "TTS_UPLOAD_BACKOFF_S": "0.2",
                "TTS_UPLOAD_BACKOFF_MAX_S": "1",
                "TTS_VISIBILITY_TIMEOUT_S": "30",
                # Most tests count engine calls for texts other tests also speak;
                # tests/test_result_cache_http.py turns the cache on.
                "TTS_RESULT_CACHE": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if s3 is not None:
            env.update(
                {
                    "TTS_STORAGE": "s3",
                    "TTS_S3_ENDPOINT_URL": s3.url,
                    "TTS_S3_BUCKET": s3.bucket,
                    "TTS_S3_ACCESS_KEY_ID": s3.access_key,
                    "TTS_S3_SECRET_ACCESS_KEY": s3.secret_key,
                }
            )
        env.update(overrides)
        self.env = env
        logs = tmp / "logs"
        logs.mkdir(exist_ok=True)
        self.api = Piece("api", env, logs / "api.log")
        self.worker = Piece("worker", env, logs / "worker.log")
        self.io = Piece("io", env, logs / "io.log")
        self.extra_workers: list[Piece] = []

    def add_worker(self) -> Piece:
        """Another synthesis worker on the same queue (a second GPU machine)."""
        n = len(self.extra_workers) + 2
        piece = Piece("worker", self.env, self.tmp / "logs" / f"worker{n}.log").start()
        self.extra_workers.append(piece)
        return piece

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_s: float = 60) -> Stack:
        """Start the three pieces and wait until the stack is ready; a stack that never gets
        ready is stopped before the error is raised, so no piece outlives its caller."""
        for piece in (self.api, self.worker, self.io):
            piece.start()
        try:
            self.wait_ready(ready_s)
        except AssertionError:
            self.stop()
            raise
        return self

    def wait_api(self, timeout: float = 30) -> None:
        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, "the API to answer", every=0.1)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            try:
                r = httpx.get(f"{self.url}/ready", headers=self.headers("alice"), timeout=2)
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, "the stack to be ready", every=0.2)

    def stop(self) -> None:
        for piece in (self.api, self.worker, self.io, *self.extra_workers):
            piece.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p} ---\n{(self.tmp / 'logs' / p).read_text()[-4000:]}"
            for p in ("api.log", "worker.log", "io.log")
            if (self.tmp / "logs" / p).exists()
        )

    # -- client helpers --------------------------------------------------------------------

    @staticmethod
    def headers(owner: str = "alice") -> dict[str, str]:
        return {"X-Api-Key": KEYS[owner]}

    def submit(self, owner: str = "alice", **body: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/v1/jobs", json=body, headers=self.headers(owner), timeout=10)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def get(self, job_id: str, owner: str = "alice") -> dict[str, Any]:
        r = httpx.get(f"{self.url}/v1/jobs/{job_id}", headers=self.headers(owner), timeout=10)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_end(
        self,
        job_id: str,
        timeout: float = 30,
        owner: str = "alice",
        every: float = 0.1,
        watch: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The job once it has ended; `watch` sees each look at it before then."""

        def ended() -> dict[str, Any] | None:
            try:
                job = self.get(job_id, owner)
            except httpx.HTTPError:
                return None
            if job["status"] in TERMINAL:
                return job
            if watch is not None:
                watch(job)
            return None

        try:
            return dict(wait_for(ended, timeout, f"job {job_id} to end", every=every))
        except AssertionError:
            raise AssertionError(
                f"job {job_id} did not end: {self.get(job_id, owner)}\n{self.logs()}"
            ) from None

    def wait_status(
        self, job_id: str, status: str, stage: str | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.get(job_id)
            ok = job["status"] == status and (stage is None or job["stage"] == stage)
            return job if ok else None

        return dict(wait_for(reached, timeout, f"job {job_id} to be {status}/{stage}"))


def wav_ok(data: bytes) -> float:
    """Duration of a well-formed, non-silent 16-bit WAV; fails the test otherwise."""
    import io
    import wave
    from array import array

    with wave.open(io.BytesIO(data)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        frames = w.readframes(w.getnframes())
        rate = w.getframerate()
    samples = array("h", frames)
    assert samples and max(abs(s) for s in samples) > 1000, "audio is silent"
    return len(samples) / rate
