"""Slow and idle clients against a real `ttsq api` process, over real sockets.

Each test starts its own API (no workers: these are about connections, not jobs) with small
limits, and plays the client that sends a byte at a time or never finishes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import REPO, RedisServer, wait_for
from tests.support.stack import DB, KEYS, Stack

pytestmark = pytest.mark.integration

StartApi = Callable[..., Stack]


def health_ok(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def start_api(tmp_path: Path, redis_server: RedisServer) -> Iterator[StartApi]:
    started: list[Stack] = []

    def start(**overrides: str) -> Stack:
        stack = Stack(
            tmp_path / str(len(started)), redis_server, None, db=DB["slow_clients"], **overrides
        )
        started.append(stack)
        stack.api.start()
        wait_for(lambda: health_ok(stack.url), 30, "the API to answer /health")
        return stack

    yield start
    for stack in started:
        stack.api.stop()


def connect(stack: Stack, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
    s.sendall(first)
    return s


def closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed `s` (reads EOF or a reset); never blocks."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(65536, socket.MSG_PEEK) == b""
    except OSError:
        return True


def trickle_until_closed(s: socket.socket, byte: bytes, within_s: float) -> bytes:
    """Send `byte` every 0.2 s until the server hangs up; return what it answered."""
    answer = b""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            s.sendall(byte)
        except OSError:
            return answer
        readable, _, _ = select.select([s], [], [], 0.2)
        if readable:
            try:
                chunk = s.recv(65536)
            except OSError:
                return answer
            if not chunk:
                return answer
            answer += chunk
    raise AssertionError(f"the server kept the connection open for {within_s} s")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_headers_sent_a_byte_at_a_time_are_cut_off(start_api: StartApi) -> None:
    stack = start_api(TTS_HEADER_TIMEOUT_S="1")
    with connect(stack, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ") as s:
        assert trickle_until_closed(s, b"a", within_s=20) == b""
    assert health_ok(stack.url)


def test_a_body_sent_a_byte_at_a_time_is_answered_408_and_cut_off(start_api: StartApi) -> None:
    stack = start_api(TTS_BODY_TIMEOUT_S="1")
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Api-Key: " + KEYS["alice"].encode() + b"\r\nContent-Length: 1000\r\n\r\n"
    )
    with connect(stack, head + b'{"text": "') as s:
        answer = trickle_until_closed(s, b"a", within_s=20)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"code":"request_timeout"' in answer.replace(b" ", b"")


def test_idle_connections_beyond_the_limit_make_room_and_health_still_answers(
    start_api: StartApi,
) -> None:
    stack = start_api(TTS_MAX_CONNECTIONS="20", TTS_HEADER_TIMEOUT_S="120")
    assert stack.api.proc is not None
    pid = stack.api.proc.pid
    before = open_fds(pid)
    idle = [connect(stack, b"GET /health HTTP/1.1\r\n") for _ in range(100)]
    try:
        wait_for(
            lambda: sum(closed_by_server(s) for s in idle) >= 80,
            20,
            "the server to close the idle connections beyond its limit",
        )
        assert open_fds(pid) <= before + 20 + 5
        assert httpx.get(f"{stack.url}/health", timeout=5).status_code == 200
        # the oldest waiters went first: the newest idle connections are still open
        assert not any(closed_by_server(s) for s in idle[-10:])
    finally:
        for s in idle:
            s.close()


def test_running_out_of_file_descriptors_logs_a_few_lines_not_thousands(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    stack = Stack(tmp_path, redis_server, None, db=DB["slow_clients"], TTS_HEADER_TIMEOUT_S="120")
    log = tmp_path / "api.log"

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ttsq.cli", "api"],
            env=stack.env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=low_fd_limit,  # the test process has no threads yet
        )
    held: list[socket.socket] = []
    try:
        wait_for(lambda: health_ok(stack.url), 30, "the API to answer /health")
        for _ in range(150):
            with contextlib.suppress(OSError):
                held.append(connect(stack, b"GET /health HTTP/1.1\r\n"))
        time.sleep(3)  # the window in which an unbounded accept loop logs thousands of lines
        for s in held:
            s.close()
        held.clear()
        wait_for(lambda: health_ok(stack.url), 20, "the API to answer again")
    finally:
        for s in held:
            s.close()
        proc.terminate()
        proc.wait(20)
    text = log.read_text()
    lines = text.count("socket.accept() out of system resource")
    assert 1 <= lines <= 5, f"{lines} accept-error lines\n{text[-3000:]}"
    assert "Exception in callback" not in text and len(text.splitlines()) < 100, text[-3000:]
    assert "open-file limit" in text  # the start warned that the limit is below the setting
