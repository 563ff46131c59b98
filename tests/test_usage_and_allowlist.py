"""`GET /v1/usage` sums what a key used; the client allow-list keeps other addresses out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api.allowlist import client_address
from api.app import create_app
from common.netguard import parse_cidrs
from common.settings import Settings
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_usage_counts_the_keys_jobs_gpu_and_audio_seconds(stack: Stack) -> None:
    since = datetime.now(UTC).isoformat()  # the session's stack is shared: count from here
    done = [
        stack.wait_end(stack.submit(owner="carol", text=f"usage {i}")["id"], owner="carol")
        for i in range(3)
    ]
    window = {"since": since}
    r = httpx.get(f"{stack.url}/v1/usage", params=window, headers=stack.headers("carol"))
    assert r.status_code == 200, r.text
    usage = r.json()
    assert usage["jobs"] == 3 and usage["succeeded"] == 3
    assert abs(usage["audio_seconds"] - sum(j["audio"]["duration_s"] for j in done)) < 0.01
    assert usage["gpu_seconds"] > 0 and usage["estimated_cost"] is None
    assert usage["workers"] and all(w["idle_s"] >= 0 for w in usage["workers"])
    other = httpx.get(f"{stack.url}/v1/usage", params=window, headers=stack.headers("dave"))
    assert other.json()["jobs"] == 0  # another key's jobs are not counted


def ask(settings: Settings, client: tuple[str, int], headers: dict[str, str]) -> int:
    app = create_app(settings)

    async def go() -> int:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.get("/health", headers=headers)).status_code

    return asyncio.run(go())


def test_the_allow_list_admits_listed_clients_only(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        api_key="k" * 20,
        redis_url="redis://127.0.0.1:9/0",
        allowed_cidrs="203.0.113.0/24",
        trusted_proxies="10.0.0.1/32",
    )
    assert ask(settings, ("203.0.113.7", 1), {}) == 200
    assert ask(settings, ("198.51.100.9", 1), {}) == 403
    via_proxy = {"X-Forwarded-For": "203.0.113.8"}
    assert ask(settings, ("10.0.0.1", 1), via_proxy) == 200
    assert ask(settings, ("198.51.100.9", 1), via_proxy) == 403  # not a trusted proxy


def test_a_forged_forwarded_for_cannot_skip_the_proxy_chain() -> None:
    trusted = parse_cidrs("10.0.0.1/32")
    scope = {"client": ("10.0.0.1", 1), "headers": [(b"x-forwarded-for", b"203.0.113.8, 6.6.6.6")]}
    assert client_address(scope, trusted) == "6.6.6.6"  # the hop the proxy itself saw
