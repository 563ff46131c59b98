"""Many clients holding `Prefer: wait`: 500 of them raise neither `/health`'s latency above
twice its idle value nor Redis's command rate above that of 10 waiting clients (issue 14).

    .venv/bin/python -m bench.waiters [--waiters 500] [--few 10] [--window-s 20] [--wait-s 60]

Two real stacks (Redis, `ttsq api`, `ttsq worker`, `ttsq io`, S3 server, on loopback), one
after the other, each with a Redis of its own. The synthesis worker holds long jobs
(`ScriptedEngine`, sleep:600), so every waiter's job stays queued and its `POST /v1/jobs` with
`Prefer: wait=N` stays open. Everything goes through HTTP except the figures read from Redis
(`INFO`) and /proc. Each phase measures Redis's command rate (`total_commands_processed` over
`--window-s`, while nothing else talks to the API), then `/health`'s latency (sequential
requests, each on a new connection; it reads Redis, so it is kept out of the window):

- the few side: idle; `--few` waiters (their jobs are then cancelled, which answers them and
  times how soon); `--few` waiters again with other jobs queued, so that the store holds as
  many jobs as on the many side, so that only the waiting differs (the sweeper's reads grow
  with the stored jobs, waited on or not);
- the many side: idle (the reference for `/health`); `--waiters` waiters.

Beside each rate: the busiest commands, Redis's client count, and the API process's CPU use
over the window. The Redis target compares the many side with the few side's second phase,
within `RATE_NOISE`. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.engine_vs_queue import pct
from bench.stack import bench_stack
from tests.support.stack import Stack

HEALTH_RATIO, CLK_TCK = 2.0, 100
#: Redis's rate with nothing waiting differs by up to about 3% between two windows of one
#: stack (the sweeper, heartbeats and Celery's polls are not in step with the window), so two
#: equal rates are judged equal within it. Polling costs ~2 commands/s per waiter: 500 of them
#: would be ~25 times the whole rate.
RATE_NOISE = 0.03


class Waiters:
    """Clients each holding one `POST /v1/jobs` with `Prefer: wait`; notes how each ended."""

    def __init__(self, stack: Stack, wait_s: float, connections: int) -> None:
        self.client = httpx.AsyncClient(
            base_url=stack.url,
            headers={**stack.headers(), "Prefer": f"wait={wait_s:g}"},
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=0),
            timeout=wait_s + 60,
        )
        self.tasks: list[asyncio.Task[None]] = []
        #: waiter number -> its outcome: the HTTP status and the job's status, or the client
        #: error's name.
        self.ended: dict[int, str] = {}

    def open(self, n: int) -> list[asyncio.Task[None]]:
        new = [asyncio.create_task(self._hold(len(self.tasks) + i)) for i in range(n)]
        self.tasks += new
        return new

    async def _hold(self, i: int) -> None:
        try:
            r = await self.client.post("/v1/jobs", json={"text": f"Waiter {i}."})
            body = r.json()
            job = body.get("status") or body.get("error", {}).get("code")
            outcome = f"{r.status_code} {job}"
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        self.ended[i] = outcome

    def holding(self) -> int:
        return sum(not t.done() for t in self.tasks)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()


def health_latency(port: int, n: int, cap_s: float) -> dict[str, Any]:
    """`GET /health` one at a time, each on a new connection, as a load balancer's probe comes
    (and as no keep-alive quirk can hide: before f91e7d7 every answer after a connection's
    first waited ~40 ms for the client's delayed ACK)."""
    times: list[float] = []
    deadline = time.monotonic() + cap_s
    while len(times) < n and time.monotonic() < deadline:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise SystemExit(f"/health answered {response.status}")
        times.append(time.perf_counter() - started)
    return {
        "n": len(times),
        "median_ms": round(1000 * statistics.median(times), 2),
        "p95_ms": round(1000 * pct(times, 0.95), 2),
    }


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def calls(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})


def command_rate(client: redis.Redis, api_pid: int, window_s: float) -> dict[str, Any]:
    before, cpu_before = client.info("stats")["total_commands_processed"], cpu_s(api_pid)
    calls_before = calls(client)
    started = time.monotonic()
    time.sleep(window_s)
    took = time.monotonic() - started
    after, cpu_after = client.info("stats")["total_commands_processed"], cpu_s(api_pid)
    busiest = (calls(client) - calls_before).most_common(6)
    return {
        "redis_commands_per_s": round((after - before) / took, 1),
        "busiest_per_s": {name: round(n / took, 1) for name, n in busiest},
        "redis_clients": client.info("clients")["connected_clients"],
        "api_cpu_s_per_s": round((cpu_after - cpu_before) / took, 3),
    }


def queue_depth(stack: Stack) -> int:
    r = httpx.get(f"{stack.url}/ready", headers=stack.headers(), timeout=30)
    return int(r.json()["queue_depth"])


async def until_queued(stack: Stack, n: int, timeout: float) -> float:
    started = time.monotonic()
    while await asyncio.to_thread(queue_depth, stack) < n:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"fewer than {n} jobs queued after {timeout} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def cancel_queued(stack: Stack, keep: set[str]) -> int:
    canceled = 0
    with httpx.Client(base_url=stack.url, headers=stack.headers(), timeout=30) as client:
        while ids := [
            j["id"]
            for j in client.get("/v1/jobs?status=queued&limit=100").json()["data"]
            if j["id"] not in keep
        ]:
            for job_id in ids:
                client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
            canceled += len(ids)
    return canceled


async def phase(
    stack: Stack, waiters: Waiters, n: int, args: argparse.Namespace, rc: redis.Redis
) -> dict[str, Any]:
    assert stack.api.proc is not None
    before = await asyncio.to_thread(queue_depth, stack)
    opened = time.monotonic()
    waiters.open(n)
    ramp_s = await until_queued(stack, before + n, args.wait_s)
    await asyncio.sleep(2)  # the last requests reach their wait
    figures = await asyncio.to_thread(command_rate, rc, stack.api.proc.pid, args.window_s)
    health = await asyncio.to_thread(health_latency, stack.port, args.health_n, args.health_cap_s)
    return {
        "waiters": n,
        "all_queued_after_s": round(ramp_s, 1),
        **figures,
        "health": health,
        "still_holding": waiters.holding(),
        "held_s": round(time.monotonic() - opened, 1),
    }


async def hold_worker(stack: Stack) -> set[str]:
    """Two long jobs: a worker that takes its next job while the engine is busy (and marks it
    running) takes the second, not a waiter's."""
    holders = [
        stack.submit(text=f"hold the worker {i}", metadata={"script": "sleep:600"})["id"]
        for i in range(2)
    ]
    stack.wait_status(holders[0], "running")
    await asyncio.sleep(1)
    await asyncio.to_thread(health_latency, stack.port, 50, 10)  # warm-up
    return set(holders)


async def quiet(stack: Stack, args: argparse.Namespace, rc: redis.Redis) -> dict[str, Any]:
    assert stack.api.proc is not None
    figures = await asyncio.to_thread(command_rate, rc, stack.api.proc.pid, args.window_s)
    figures["health"] = await asyncio.to_thread(
        health_latency, stack.port, args.health_n, args.health_cap_s
    )
    return figures


async def submit_plain(stack: Stack, n: int) -> None:
    """`n` jobs without `Prefer: wait`, 32 requests at a time."""
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers()) as client:

        async def one(i: int) -> None:
            async with limit:
                r = await client.post("/v1/jobs", json={"text": f"Other job {i}."})
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(n)))


async def few_side(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    rc = redis.Redis.from_url(stack.redis.url)
    holders = await hold_worker(stack)
    idle = await quiet(stack, args, rc)
    waiters = Waiters(stack, args.wait_s, args.few + 100)
    try:
        few = await phase(stack, waiters, args.few, args, rc)
        few["answered_early"] = dict(Counter(waiters.ended.values()))
        few["canceled_then"] = await asyncio.to_thread(cancel_queued, stack, holders)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*waiters.tasks), args.wait_s + 10)
        few["answered_after_cancel_s"] = round(time.monotonic() - started, 2)
        few["answers"] = dict(Counter(waiters.ended.values()))
        # As many jobs in the store as the many side will have, so that only the waiting
        # differs: the sweeper's reads grow with the stored jobs, waited on or not.
        others = args.waiters - 2 * args.few
        await submit_plain(stack, others)
        filled = {"other_jobs_queued": others, **await phase(stack, waiters, args.few, args, rc)}
    finally:
        await waiters.close()
    return {"idle": idle, "few": few, "few_filled": filled}


async def many_side(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    rc = redis.Redis.from_url(stack.redis.url)
    await hold_worker(stack)
    idle = await quiet(stack, args, rc)
    waiters = Waiters(stack, args.wait_s, args.waiters + 100)
    try:
        many = await phase(stack, waiters, args.waiters, args, rc)
        many["answered_early"] = dict(Counter(waiters.ended.values()))
    finally:
        await waiters.close()
    return {"idle": idle, "many": many}


def on_a_stack(
    side: Callable[[Stack, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Run one side on a stack of its own, with its own Redis."""
    with bench_stack() as stack:
        return asyncio.run(side(stack, args))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", type=int, default=500)
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--wait-s", type=float, default=60.0, help="Prefer: wait=N (max 60)")
    parser.add_argument("--health-n", type=int, default=200)
    parser.add_argument("--health-cap-s", type=float, default=15.0)
    args = parser.parse_args()
    few, many = on_a_stack(few_side, args), on_a_stack(many_side, args)
    idle_ms, many_ms = many["idle"]["health"]["median_ms"], many["many"]["health"]["median_ms"]
    rates = {
        "idle": many["idle"]["redis_commands_per_s"],
        "few": few["few"]["redis_commands_per_s"],
        "few_with_others_queued": few["few_filled"]["redis_commands_per_s"],
        "many": many["many"]["redis_commands_per_s"],
    }
    health_ok = many_ms / idle_ms <= HEALTH_RATIO
    reference = rates["few_with_others_queued"]
    rate_ok = rates["many"] <= reference * (1 + RATE_NOISE)
    per_waiter = (rates["many"] - reference) / (args.waiters - args.few)
    print(
        json.dumps(
            {
                "waiters": args.waiters,
                "few": args.few,
                "wait_s": args.wait_s,
                "window_s": args.window_s,
                "health_median_ms": {"idle": idle_ms, "many": many_ms},
                "health_ratio": round(many_ms / idle_ms, 2),
                "redis_commands_per_s": rates,
                "redis_commands_per_s_per_waiter": round(per_waiter, 4),
                "target": f"health_ratio <= {HEALTH_RATIO}; redis rate with {args.waiters} "
                f"waiters <= with {args.few}, as many jobs stored, within {RATE_NOISE:.0%}",
                "met_health": health_ok,
                "met_redis_rate": rate_ok,
                "met": health_ok and rate_ok,
                "few_side": few,
                "many_side": many,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
