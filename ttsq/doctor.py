"""`ttsq doctor`: check a deployment, one line per check, and exit 1 if any fails.

Run it on the machine that runs the stack, with the stack's settings (the same environment or
`.env`): Redis reachable and persistent, storage writable, the engine's weights complete, the
GPU (only where torch is installed), live workers, and the public URL answering `/health`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis

from common import embedded_redis
from common.errors import EngineLoadError
from common.settings import Settings


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not applicable here (skipped, never a failure)
    detail: str

    def line(self) -> str:
        mark = {True: "ok", False: "FAIL", None: "skip"}[self.ok]
        return f"{mark:<5} {self.name:<8} {self.detail}"


def _redis_url(settings: Settings) -> str:
    return settings.redis_url or embedded_redis.url(settings.embedded_redis_port)


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(_redis_url(settings), socket_connect_timeout=3, socket_timeout=5)


def check_redis(settings: Settings) -> Check:
    where = _masked(_redis_url(settings))
    client = _client(settings)
    try:
        client.ping()
        config = client.config_get("appendonly")
        config.update(client.config_get("maxmemory-policy"))
    except redis.ResponseError as exc:  # CONFIG renamed away, or a wrong password
        return Check("redis", False, f"{where}: {exc}")
    except redis.RedisError as exc:
        return Check("redis", False, f"{where}: unreachable ({exc})")
    problems = []
    if config.get("appendonly") != "yes":
        problems.append("appendonly is not yes: a restart loses queued jobs")
    if config.get("maxmemory-policy") != "noeviction":
        problems.append(
            f"maxmemory-policy is {config.get('maxmemory-policy')}, not noeviction: "
            "a full Redis would evict jobs"
        )
    if problems:
        return Check("redis", False, f"{where}: {'; '.join(problems)}")
    return Check("redis", True, f"{where}: reachable, appendonly yes, noeviction")


def check_storage(settings: Settings) -> Check:
    from common.storage import storage_problem

    problem = storage_problem(settings)
    if problem is not None:
        return Check("storage", False, problem)
    if settings.storage == "s3":
        return Check("storage", True, f"s3 bucket {settings.s3_bucket} writable")
    return Check(
        "storage",
        True,
        f"local disk {settings.data_dir / 'objects'} writable; local storage cannot be shared "
        "across machines: a worker on a second machine needs TTS_STORAGE=s3",
    )


def check_weights(settings: Settings) -> Check:
    from gpu_worker.engines import resolve

    try:
        engine_cls = resolve(settings.backend)
        preflight = getattr(engine_cls, "preflight", None)
        if preflight is None:
            return Check("weights", True, f"{settings.backend}: no weights to check")
        preflight(settings)
    except EngineLoadError as exc:
        return Check("weights", False, exc.message)
    return Check("weights", True, f"{settings.backend}: {settings.indextts_model_dir} complete")


def check_gpu(settings: Settings) -> Check:
    from gpu_worker.engines.cuda import torch_installed, visible_gpu

    if not torch_installed():
        return Check("gpu", None, "torch is not installed here (CPU engine)")
    gpu = visible_gpu()
    if gpu is None:
        needs_gpu = settings.backend.startswith("index_tts2") and settings.indextts_device in (
            None,
            "cuda",
        )
        return Check("gpu", False if needs_gpu else None, "no CUDA device visible to torch")
    gib = 1024**3
    return Check(
        "gpu",
        True,
        f"{gpu.name}: {gpu.free_bytes / gib:.1f} GiB free of {gpu.total_bytes / gib:.1f} GiB",
    )


def check_workers(settings: Settings) -> Check:
    from common.worker.registry import alive_workers

    try:
        beats = alive_workers(_client(settings))
    except redis.RedisError as exc:
        return Check("workers", False, f"cannot read heartbeats: {exc}")
    synth = [b for b in beats if b.kind == "synth" and b.ready]
    io = [b for b in beats if b.kind == "io"]
    detail = f"{len(synth)} synthesis worker(s) ready, {len(io)} I/O worker(s)"
    if synth:
        detail += f" ({', '.join(sorted({f'{b.engine} on {b.device}' for b in synth}))})"
    return Check("workers", bool(synth and io), detail)


def check_url(url: str) -> Check:
    try:
        resp = httpx.get(f"{url.rstrip('/')}/health", timeout=10)
    except httpx.HTTPError as exc:
        return Check("url", False, f"{url}/health: {exc!r}")
    if resp.status_code != 200:
        return Check("url", False, f"{url}/health answered {resp.status_code}")
    try:
        said = str(resp.json().get("message") or resp.json().get("status"))
    except (ValueError, AttributeError):
        said = resp.text[:80]
    return Check("url", True, f"{url}/health answered 200: {said}")


def doctor(settings: Settings, *, url: str | None = None) -> int:
    from ttsq.say import quiet_http_logs

    quiet_http_logs()
    checks: list[Callable[[], Check]] = [
        lambda: check_redis(settings),
        lambda: check_storage(settings),
        lambda: check_weights(settings),
        lambda: check_gpu(settings),
        lambda: check_workers(settings),
        lambda: check_url(url or settings.base_url),
    ]
    failed = 0
    for run in checks:
        result = run()
        print(result.line(), flush=True)
        failed += result.ok is False
    return 1 if failed else 0
