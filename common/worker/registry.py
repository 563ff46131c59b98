"""Worker heartbeats: who is alive, with which engine, and whether it is ready.

A heartbeat is a key that expires by itself; a worker that stops renewing it is dead, and the
sweeper gives its running jobs back to the queue. The instance names are kept in one set
(`keys.WORKERS`), so listing the live workers is two commands, whatever else Redis holds.
Instance names are unique per process start, so a restarted worker never looks like the dead
one it replaced.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import cast

import redis
import redis.asyncio as aioredis

from common import keys
from common.schemas.workers import WorkerHeartbeat


def new_instance_name(kind: str) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def write_heartbeat(client: redis.Redis, beat: WorkerHeartbeat, ttl_s: float) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.worker_heartbeat(beat.instance), beat.model_dump_json(), px=int(ttl_s * 1000))
    pipe.sadd(keys.WORKERS, beat.instance)
    if beat.kind == "synth":
        pipe.set(keys.SYNTH_SEEN, f"{time.time():.3f}")
    pipe.execute()


async def synth_seen_s_ago(client: aioredis.Redis) -> float | None:
    """Seconds since a synthesis worker last wrote its heartbeat; None if none ever did."""
    raw = await client.get(keys.SYNTH_SEEN)
    return None if raw is None else max(0.0, time.time() - float(raw))


def remove_heartbeat(client: redis.Redis, instance: str) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.worker_heartbeat(instance))
    pipe.srem(keys.WORKERS, instance)
    pipe.execute()


def is_alive(client: redis.Redis, instance: str) -> bool:
    return bool(client.exists(keys.worker_heartbeat(instance)))


def alive_workers(client: redis.Redis) -> list[WorkerHeartbeat]:
    names = _names(cast(set[bytes], client.smembers(keys.WORKERS)))
    if not names:
        return []
    raws = cast(list[bytes | None], client.mget([keys.worker_heartbeat(n) for n in names]))
    beats, dead = _read(names, raws)
    if dead:
        client.srem(keys.WORKERS, *dead)
    return beats


async def alive_workers_async(client: aioredis.Redis) -> list[WorkerHeartbeat]:
    """`alive_workers` on the API's event loop."""
    names = _names(cast(set[bytes], await client.smembers(keys.WORKERS)))
    if not names:
        return []
    raws = cast(list[bytes | None], await client.mget([keys.worker_heartbeat(n) for n in names]))
    beats, dead = _read(names, raws)
    if dead:
        await client.srem(keys.WORKERS, *dead)
    return beats


def _names(members: set[bytes]) -> list[str]:
    return sorted(n.decode() for n in members)


def _read(names: list[str], raws: list[bytes | None]) -> tuple[list[WorkerHeartbeat], list[str]]:
    """The live heartbeats, and the names whose key expired: the worker died, or stopped
    without removing its name. A worker that beats again after its name was dropped adds it
    back with the beat."""
    dead = [name for name, raw in zip(names, raws, strict=True) if raw is None]
    return [WorkerHeartbeat.model_validate_json(raw) for raw in raws if raw is not None], dead


def current_jobs(client: redis.Redis) -> dict[str, set[str]]:
    """For every live worker, the jobs its heartbeat says it holds (on the engine or not)."""
    return {beat.instance: held(beat) for beat in alive_workers(client)}


def held(beat: WorkerHeartbeat) -> set[str]:
    return set(beat.holding) | ({beat.current_job} if beat.current_job else set())
