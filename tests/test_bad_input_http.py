"""Bad input gets a clear 4xx naming the problem, and nothing is queued."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.support.stack import KEYS, Stack

pytestmark = pytest.mark.integration

CASES = [
    ({"text": ""}, 422, "text"),
    ({"text": "   "}, 422, "text"),
    ({"text": "x" * 2001}, 422, "limit is 2000"),
    ({"text": 5}, 422, "text"),
    ({}, 422, "text: required"),
    ({"text": "hi", "speed": 3}, 422, "speed: Input should be less than or equal to 2"),
    ({"text": "hi", "format": "aiff"}, 422, "format"),
    ({"text": "hi", "format": "pcm_s16le", "channels": 3}, 422, "channels"),
    ({"text": "hi", "voice": "../../etc/passwd"}, 422, "voice"),
    ({"text": "hi", "voice": "klingon"}, 422, "voice: 'klingon' is not a voice"),
    ({"text": "hi", "metadata": {"k": 1}}, 422, "metadata.k"),
    (["text"], 422, "body"),
]


def queue_depth(stack: Stack) -> int:
    return int(httpx.get(f"{stack.url}/ready", headers=stack.headers()).json()["queue_depth"])


@pytest.mark.parametrize(("body", "status", "needle"), CASES)
def test_invalid_bodies_are_refused_naming_the_field(
    stack: Stack, body: object, status: int, needle: str
) -> None:
    r = httpx.post(f"{stack.url}/v1/jobs", json=body, headers=stack.headers("dave"))
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_a_body_that_is_not_json_is_a_400(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs",
        content=b"{text: nope",
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_a_body_that_is_not_declared_json_is_a_415(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs",
        content=b"text=hi",
        headers={**stack.headers(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415


def test_a_huge_body_is_refused_before_it_is_read(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs",
        content=b"{" + b" " * 200_000 + b"}",
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "65536 bytes" in r.json()["error"]["message"]


def test_malformed_and_unknown_job_ids(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/v1/jobs/not-an-id", headers=stack.headers())
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("job_id: ")
    r = httpx.get(f"{stack.url}/v1/jobs/{'0' * 32}", headers=stack.headers())
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


def test_refused_requests_queue_nothing(stack: Stack) -> None:
    before = queue_depth(stack)
    for body, _, _ in CASES:
        httpx.post(f"{stack.url}/v1/jobs", json=body, headers=stack.headers("dave"))
    assert queue_depth(stack) == before
    listed = httpx.get(f"{stack.url}/v1/jobs", headers=stack.headers("dave")).json()["data"]
    assert listed == []


def test_controls_the_running_engine_lacks_are_a_422_not_a_silent_ignore(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs",
        headers=stack.headers("dave"),
        json={
            "text": "hi",
            "emotion": {"vector": {"happy": 0.5}},
            "generation": {"temperature": 0.5},
        },
    )
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "emotion.vector: not supported by scripted-espeak" in message
    assert "generation.temperature: not supported" in message


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"emotion": {"alpha": 1.5}}, "emotion.alpha: Input should be less than or equal to 1"),
        ({"emotion": {"vector": {"happy": 0.7, "sad": 0.6}}}, "sum to 1.3; the limit is 1"),
        ({"emotion": {"vector": {"joy": 0.5}}}, "emotion.vector.joy: unknown field"),
        ({"emotion": {"audio": "angry", "text": "calm"}}, "not audio and text"),
        ({"generation": {"num_beams": 0}}, "generation.num_beams: Input should be greater than"),
        ({"generation": {"max_mel_tokens": 5000}}, "generation.max_mel_tokens"),
        ({"generation": {"temperature": "hot"}}, "generation.temperature"),
        ({"language": "fr"}, "language"),
    ],
)
def test_model_controls_are_validated_with_their_ranges(
    stack: Stack, body: dict[str, object], needle: str
) -> None:
    r = httpx.post(
        f"{stack.url}/v1/jobs", json={"text": "hi", **body}, headers=stack.headers("dave")
    )
    assert r.status_code == 422, r.text
    assert needle in r.json()["error"]["message"]


def test_a_body_somewhat_over_the_limit_gets_its_413_not_a_reset(stack: Stack) -> None:
    # A client still writing a refused body must be able to finish and read the answer; a
    # server that closes at once leaves it a reset connection instead (schemathesis saw one).
    body = json.dumps({"text": "x" * 300_000}).encode()
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nX-Api-Key: {KEYS['alice']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(head)
        for at in range(0, len(body), 32 * 1024):
            time.sleep(0.02)  # the answer is on its way while the body still streams
            sock.sendall(body[at : at + 32 * 1024])
        answer = b""
        while chunk := sock.recv(65536):  # to the close the 413 announces
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer
