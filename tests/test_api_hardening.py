"""The API's answers under faults and odd input, through an ASGI client on a real Redis server.

Each test builds the real app (`create_app`) on its own Redis database; a broker that is down is
a real Celery app pointed at a port nothing listens on.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.deps import Services
from api.text import REFUSED
from common import keys
from common.broker import make_celery
from common.jobs.store import JobStore
from common.redis_client import ASYNC_MAX_CONNECTIONS
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobStatus
from common.settings import Settings
from tests.support.servers import RedisServer, free_port
from tests.support.stack import DB

KEYS = {"alice": "key-alice-0123", "配音组": "k1-dubbing-0123"}


@dataclass
class Api:
    http: TestClient
    app: FastAPI
    redis: redis.Redis

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def headers(self, owner: str = "alice") -> dict[str, str]:
        return {"X-Api-Key": KEYS[owner]}

    def submit(self, owner: str = "alice", **body: Any) -> Any:
        return self.http.post("/v1/jobs", json=body, headers=self.headers(owner))

    def stored_jobs(self) -> list[str]:
        return [k.decode() for k in self.redis.scan_iter(match=keys.job("*"))]

    def messages(self) -> int:
        return int(self.redis.llen(keys.SYNTH_QUEUE))


def build(redis_server: RedisServer, tmp_path: Path, **overrides: Any) -> Iterator[Api]:
    url = redis_server.url.removesuffix("/0") + f"/{DB['api_hardening']}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=url,
        data_dir=tmp_path,
        storage="local",
        api_keys=SecretStr(",".join(f"{name}:{key}" for name, key in KEYS.items())),
        **overrides,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield Api(http, app, client)
    client.flushdb()


@pytest.fixture
def api(redis_server: RedisServer, tmp_path: Path) -> Iterator[Api]:
    yield from build(redis_server, tmp_path)


def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


# -- 5: an error answer means nothing was accepted; an accepted job is a 202 -------------------


def test_a_broker_down_after_the_job_is_stored_still_answers_202_with_the_job(api: Api) -> None:
    api.services.celery = make_celery(Settings(_env_file=None, redis_url=dead_redis_url()))  # type: ignore[call-arg]
    # A job submit writes its message in the job's own transaction: no broker call to fail.
    plain = api.submit(text="stored with its message")
    assert plain.status_code == 202 and api.messages() == 1
    once = api.http.post(
        "/v1/jobs",
        json={"text": "stored with its message too"},
        headers={**api.headers(), "Idempotency-Key": "once-0123"},
    )
    assert once.status_code == 202 and api.messages() == 2
    # A batch's items are published after their transaction: the outbox stands in for the broker.
    r = api.http.post(
        "/v1/batches",
        json={"items": [{"ref": "s1", "text": "stored, not yet published"}]},
        headers=api.headers(),
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["items"][0]["job_id"]
    assert keys.job(job_id) in api.stored_jobs() and api.messages() == 2
    assert api.redis.zscore(keys.UNPUBLISHED, job_id) is not None  # the sweeper publishes it
    job = api.http.get(f"/v1/jobs/{job_id}", headers=api.headers())
    assert job.status_code == 200 and job.json()["status"] == "queued"


def test_a_redis_error_marking_the_job_published_still_answers_202(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(_: str) -> None:
        raise redis.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(api.services.store, "mark_published", down)
    r = api.submit(text="published, not marked")
    assert r.status_code == 202, r.text
    assert api.messages() == 1 and api.stored_jobs() == [keys.job(r.json()["id"])]


def test_a_store_that_cannot_write_answers_503_and_nothing_is_queued(api: Api) -> None:
    url = dead_redis_url()
    dead = redis.Redis.from_url(url, socket_connect_timeout=1)
    adead = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    api.services.store = JobStore(dead, aclient=adead, job_ttl_s=60)
    r = api.submit(text="never stored")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "queue_unavailable" and r.headers["retry-after"]
    assert api.stored_jobs() == [] and api.messages() == 0


# -- 6: owner names beyond ASCII ------------------------------------------------------------


def test_an_owner_name_beyond_ascii_reads_lists_and_cancels_its_jobs(api: Api) -> None:
    r = api.submit("配音组", text="配音组的台词")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    h = api.headers("配音组")
    assert api.http.get(f"/v1/jobs/{job_id}", headers=h).status_code == 200
    assert [j["id"] for j in api.http.get("/v1/jobs", headers=h).json()["data"]] == [job_id]
    assert api.http.post(f"/v1/jobs/{job_id}/cancel", headers=h).json()["status"] == "canceled"
    assert api.http.get(f"/v1/jobs/{job_id}", headers=api.headers("alice")).status_code == 404


def test_get_owned_compares_names_beyond_ascii(store: JobStore) -> None:
    job = store.create("配音组", JobRequest(text="台词"))
    assert store.get_owned(job.id, "配音组").id == job.id


# -- 7: what queue_position means after a requeue -------------------------------------------


def test_a_requeued_job_keeps_its_place_by_acceptance_time(store: JobStore) -> None:
    a, b, c = (store.create("o", JobRequest(text=t)) for t in "abc")
    store.claim(a.id, "w1", is_alive=lambda _: False, max_attempts=3)
    assert (store.queue_position(a.id), store.queue_position(b.id)) == (None, 0)
    assert store.requeue(a.id, only_from="w1")
    assert [store.queue_position(j.id) for j in (a, b, c)] == [0, 1, 2]


def test_the_schema_says_what_queue_position_counts(api: Api) -> None:
    schema = api.http.get("/openapi.json", headers=api.headers()).json()
    described = schema["components"]["schemas"]["JobResource"]["properties"]["queue_position"]
    assert "accepted before" in described["description"]
    assert "back in the queue" in described["description"]


# -- 8: paging never skips jobs that share a creation time ------------------------------------

FIXED = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)


def page_through(api: Api, limit: int, **params: str) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        r = api.http.get("/v1/jobs", params=query, headers=api.headers())
        assert r.status_code == 200, r.text
        seen += [j["id"] for j in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"paging did not end: {seen}")


@pytest.mark.parametrize("limit", [1, 2])
def test_paging_returns_every_job_once_when_they_share_a_creation_time(
    api: Api, limit: int
) -> None:
    aclient = api.services.aredis
    api.services.store = JobStore(api.redis, aclient=aclient, job_ttl_s=60, clock=lambda: FIXED)
    ids = {api.submit(text=f"same instant {i}").json()["id"] for i in range(3)}
    listed = page_through(api, limit)
    assert len(listed) == 3 and set(listed) == ids


@pytest.mark.parametrize("limit", [1, 2])
def test_list_owned_pages_through_ties_in_the_store(store: JobStore, limit: int) -> None:
    tied = JobStore(store.redis, job_ttl_s=60, clock=lambda: FIXED)
    ids = {tied.create("o", JobRequest(text=t)).id for t in "abc"}
    seen: list[str] = []
    after = None
    for _ in range(5):
        jobs, after = tied.list_owned("o", status=None, after=after, limit=limit)
        seen += [j.id for j in jobs]
        if after is None:
            break
    assert len(seen) == 3 and set(seen) == ids


def test_a_cursor_that_is_not_one_is_a_422_naming_it(api: Api) -> None:
    r = api.http.get("/v1/jobs", params={"cursor": "x" * 10}, headers=api.headers())
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("cursor: ")


def test_the_status_filter_returns_the_matching_jobs(api: Api) -> None:
    ids = [api.submit(text=f"line {i}").json()["id"] for i in range(4)]
    api.services.store.fail(ids[1], "engine_rejected_input", "no", retryable=False)
    api.services.store.fail(ids[3], "engine_rejected_input", "no", retryable=False)
    h = api.headers()
    failed = api.http.get("/v1/jobs", params={"status": "failed"}, headers=h).json()["data"]
    assert [j["id"] for j in failed] == [ids[3], ids[1]]
    assert all(j["status"] == JobStatus.failed for j in failed)
    queued = api.http.get("/v1/jobs", params={"status": "queued", "limit": 1}, headers=h).json()
    assert [j["id"] for j in queued["data"]] == [ids[2]]
    rest = api.http.get(
        "/v1/jobs", params={"status": "queued", "cursor": queued["next_cursor"]}, headers=h
    ).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]]


# -- 17: text with nothing to speak ---------------------------------------------------------


def test_the_refused_characters_are_the_control_characters_but_tab_and_line_breaks() -> None:
    """`api/text.REFUSED` is Unicode's categories Cc and Cs, less tab, LF and CR, for every
    code point of this Python's Unicode database."""
    by_category = {
        chr(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cc", "Cs") and chr(c) not in "\t\n\r"
    }
    by_pattern = {chr(c) for c in range(sys.maxunicode + 1) if REFUSED.match(chr(c))}
    assert by_pattern == by_category


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("\u200b\u200b", "no letter or digit"),
        ("?!.,;:…—", "no letter or digit"),
        ("\u0000", "control character U+0000"),
        ("hello\u0000world", "control character U+0000"),
        ("bell\u0007", "control character U+0007"),
    ],
)
def test_text_with_nothing_to_speak_is_a_422_naming_the_field(
    api: Api, text: str, needle: str
) -> None:
    r = api.submit(text=text)
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("text: ") and needle in message
    assert api.stored_jobs() == []


@pytest.mark.parametrize("text", ["你好", "42", "Hello,\nworld.\tAgain.", "¿Qué?", "ok 👍"])
def test_text_with_something_to_speak_is_accepted(api: Api, text: str) -> None:
    assert api.submit(text=text).status_code == 202


# -- 18: small HTTP points ------------------------------------------------------------------


def test_head_health_answers_200_without_a_key(api: Api) -> None:
    r = api.http.head("/health")
    assert r.status_code == 200 and r.content == b""


def test_docs_and_the_openapi_document_need_the_key_unless_public(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    for api in build(redis_server, tmp_path, public_docs=False):
        _docs_need_the_key(api)


def test_beyond_loopback_the_docs_need_the_key_by_default(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    for api in build(redis_server, tmp_path, host="0.0.0.0"):
        _docs_need_the_key(api)


def test_on_loopback_the_docs_are_served_by_default(api: Api) -> None:
    assert "swagger" in api.http.get("/docs").text.lower()
    assert api.http.get("/openapi.json").status_code == 200
    assert api.http.get("/v1/jobs").status_code == 401


def _docs_need_the_key(api: Api) -> None:
    assert api.http.get("/openapi.json").status_code == 401
    assert api.http.get("/openapi.json", headers=api.headers()).json()["info"]["title"] == "ttsq"
    for path in ("/docs", "/redoc"):
        r = api.http.get(path, headers=api.headers())
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_public_docs_open_docs_and_the_openapi_document_to_anyone(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    for api in build(redis_server, tmp_path, public_docs=True):
        assert api.http.get("/openapi.json").status_code == 200
        assert "swagger" in api.http.get("/docs").text.lower()
        assert api.http.get("/v1/jobs").status_code == 401


def test_invalid_utf8_in_a_json_body_is_invalid_json(api: Api) -> None:
    r = api.http.post(
        "/v1/jobs",
        content=b'{"text": "\xff\xfe"}',
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert "UTF-8" in r.json()["error"]["message"]


# -- /ready -----------------------------------------------------------------------------------


def test_ready_answers_503_naming_what_is_missing(api: Api) -> None:
    r = api.http.get("/ready", headers=api.headers())
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "not_ready" and "no synthesis worker" in error["message"]


# -- a burst of submits: more at once than the event loop's Redis connections -----------------


def test_a_burst_of_submits_waits_for_redis_connections_and_every_one_is_accepted(
    api: Api,
) -> None:
    n = 3 * ASYNC_MAX_CONNECTIONS
    with ThreadPoolExecutor(n) as pool:  # each request waits on the app's event loop at once
        answers = list(pool.map(lambda i: api.submit(text=f"burst {i}").status_code, range(n)))
    assert answers == [202] * n
    assert api.messages() == n
