"""What routes depend on, as `Annotated` aliases: the caller's identity and the shared parts."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Depends, Request

from api.ends import EndWatcher
from api.engine_check import EngineView
from common.errors import Unauthorized
from common.jobs.store import JobStore
from common.settings import Settings
from common.storage import LocalStorage, S3Storage
from common.voicestore import VoiceStore

ANONYMOUS = "anonymous"


@dataclass
class Services:
    settings: Settings
    store: JobStore
    #: The event loop's Redis client (the job store's `aredis`), for routes that only read Redis.
    aredis: aioredis.Redis
    storage: LocalStorage | S3Storage
    celery: Celery
    engine_view: EngineView
    voices: VoiceStore
    #: Wakes requests waiting for a job's end (`api/ends.py`).
    ends: EndWatcher
    #: {key: owner name}, compared in constant time.
    api_keys: dict[str, str] = field(default_factory=dict)


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Svc = Annotated[Services, Depends(get_services)]


def presented_key(request: Request) -> str | None:
    """The key as `X-Api-Key`, `Authorization: Bearer <key>`, or `Authorization: Basic` with
    the key as the password: what an HTTP client sends for a URL with user-info
    (`http://dub:<key>@host:6006`), the only way a client with no key header can carry one."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if not token:
        return None
    if scheme.lower() == "bearer":
        return token
    if scheme.lower() == "basic":
        return _basic(token)[1] or None
    return None


def caller_label(request: Request) -> str | None:
    """The user name of `Authorization: Basic` (a label the caller chose, never a secret),
    recorded on the jobs it submits as `metadata.caller`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    return _basic(token.strip())[0][:64] or None


def _basic(token: str) -> tuple[str, str]:
    try:
        user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password


async def get_owner(request: Request) -> str:
    """The name the presented key belongs to; 401 for a missing or unknown key. Both
    dependencies are `async def` though they never wait: FastAPI runs a plain `def` dependency
    in the thread pool, a thread switch each way on every request. The services are taken from
    the app here, not as a dependency of this one: one dependency fewer for FastAPI to solve
    on every request."""
    services: Services = request.app.state.services
    if not services.api_keys:
        return ANONYMOUS
    presented = presented_key(request)
    if presented is None:
        raise Unauthorized(
            "an API key is required (X-Api-Key, Authorization: Bearer, or the key as the "
            "password of the URL's user-info: http://name:<key>@host)",
            code="missing_api_key",
        )
    owner = None
    candidate = presented.encode()
    for key, name in services.api_keys.items():  # compare with every key: no early exit
        if hmac.compare_digest(candidate, key.encode()):
            owner = name
    if owner is None:
        raise Unauthorized("the API key is not valid", code="invalid_api_key")
    return owner


Owner = Annotated[str, Depends(get_owner)]
