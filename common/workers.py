"""Worker heartbeats: who is alive, with which engine, and whether it is ready.

A heartbeat is a key that expires by itself; a worker that stops renewing it is dead, and the
sweeper gives its running jobs back to the queue. Instance names are unique per process start,
so a restarted worker never looks like the dead one it replaced.
"""

from __future__ import annotations

import os
import secrets
import socket

import redis

from common import keys
from common.schemas import WorkerHeartbeat


def new_instance_name(kind: str) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def write_heartbeat(client: redis.Redis, beat: WorkerHeartbeat, ttl_s: float) -> None:
    client.set(keys.worker_heartbeat(beat.instance), beat.model_dump_json(), px=int(ttl_s * 1000))


def remove_heartbeat(client: redis.Redis, instance: str) -> None:
    client.delete(keys.worker_heartbeat(instance))


def is_alive(client: redis.Redis, instance: str) -> bool:
    return bool(client.exists(keys.worker_heartbeat(instance)))


def alive_workers(client: redis.Redis) -> list[WorkerHeartbeat]:
    beats = []
    for key in client.scan_iter(match=keys.WORKER_HEARTBEAT_PATTERN, count=100):
        raw = client.get(key)
        if raw:
            beats.append(WorkerHeartbeat.model_validate_json(raw))
    return sorted(beats, key=lambda b: b.instance)


def current_jobs(client: redis.Redis) -> dict[str, set[str]]:
    """For every live worker, the jobs its heartbeat says it holds (on the engine or not)."""
    return {beat.instance: held(beat) for beat in alive_workers(client)}


def held(beat: WorkerHeartbeat) -> set[str]:
    return set(beat.holding) | ({beat.current_job} if beat.current_job else set())
