"""Fixtures: real Redis and S3 servers for the session, and a running ttsq stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from common.jobs.store import JobStore
from tests.support.servers import RedisServer, S3Server
from tests.support.stack import DB, Stack

#: The files that take longest (each over a minute on 2 cores), run first: `make test` hands
#: whole files to its two processes in collection order (`--no-loadscope-reorder`; xdist's own
#: order is by test count), so a long file started last would leave one process working alone
#: at the end.
LONGEST_FIRST = (
    "test_real_indextts.py",
    "test_stuck_jobs.py",
    "test_reliability_faults.py",
    "test_deploy_autodl.py",
    "test_dubbing_worker.py",
    "test_dropin_http.py",
    "test_cli_dub.py",
    "test_fuzz_openapi.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    """A job store on an empty database of the session's Redis, its own (`DB["store"]`)."""
    client = redis.Redis.from_url(redis_server.url.removesuffix("/0") + f"/{DB['store']}")
    client.flushdb()
    yield JobStore(client, job_ttl_s=60)
    client.flushdb()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Stack]:
    """One stack shared by the tests that do not break it."""
    s = Stack(tmp_path_factory.mktemp("stack"), redis_server, s3_server).start()
    yield s
    s.stop()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Build a stack with its own Redis and S3 servers, for tests that kill or restart things."""
    made: list[tuple[Stack, RedisServer, S3Server]] = []

    def make(**overrides: str) -> Stack:
        own_redis = RedisServer(tmp_path / "redis").start()
        s3 = S3Server().start()
        stack = Stack(tmp_path, own_redis, s3, **overrides)
        made.append((stack, own_redis, s3))
        return stack

    yield make
    for stack, redis_server, s3 in made:
        stack.stop()
        redis_server.stop()
        s3.stop()
