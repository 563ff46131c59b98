"""Hostile input over real HTTP: keys, signed URLs, traversal, oversized requests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_a_signed_file_url_cannot_be_altered_to_reach_another_file(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(TTS_STORAGE="local").start()
    mine = stack.wait_end(stack.submit("alice", text="alice's line")["id"])
    theirs = stack.wait_end(
        stack.submit(
            "bob",
            text="bob's line",
        )["id"],
        owner="bob",
    )
    url = urlparse(mine["audio"]["url"])
    assert httpx.get(mine["audio"]["url"]).content[:4] == b"RIFF"
    q = parse_qs(url.query)
    base = f"{stack.url}{url.path}"
    other = base.replace(mine["id"], theirs["id"])
    forged = [
        f"{other}?{url.query}",  # another job's file with my signature
        f"{base}?expires={int(q['expires'][0]) + 3600}&sig={q['sig'][0]}",  # a longer life
        f"{base}?expires={q['expires'][0]}&sig={'0' * 64}",
        f"{stack.url}/v1/files/..%2fsigning.key?{url.query}",
        f"{stack.url}/v1/files/audio/..%2f..%2fsigning.key?{url.query}",
        f"{stack.url}/v1/files/%2e%2e/%2e%2e/api_key?{url.query}",
    ]
    for attempt in forged:
        r = httpx.get(attempt)
        assert r.status_code in (404, 422), (attempt, r.status_code)
        assert b"RIFF" not in r.content and r.json()["error"]["code"] in {
            "file_not_found",
            "invalid_request",
            "not_found",
        }


def test_job_ids_are_random_128_bit_hex(stack: Stack) -> None:
    ids = [stack.submit(text="id")["id"] for _ in range(20)]
    assert len(set(ids)) == 20 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    for job_id in ids:
        stack.wait_end(job_id)


def test_huge_headers_are_refused(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/health", headers={"X-Junk": "x" * 20_000})
    assert r.status_code == 431
    assert r.json()["error"]["code"] == "request_header_too_large"
    try:  # beyond the parser's buffer the server hangs up rather than answer
        status = httpx.get(f"{stack.url}/health", headers={"X-Junk": "x" * 200_000}).status_code
    except httpx.TransportError:
        status = 499
    assert 400 <= status < 500


def test_a_chunked_body_over_the_limit_is_cut_off(stack: Stack) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"a" * 4096
        yield b'"}'

    r = httpx.post(
        f"{stack.url}/v1/jobs",
        content=chunks(),
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_a_key_in_the_query_string_is_not_a_key(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/v1/jobs", params={"api_key": "key-alice-0123456789"})
    assert r.status_code == 401
