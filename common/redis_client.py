"""The one way every process connects to Redis: bounded waits, a few retries with backoff on
a lost connection, and the embedded server's URL where no `TTS_REDIS_URL` is set."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.settings import Settings


def redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    from common import embedded_redis

    return embedded_redis.url(settings.embedded_redis_port)


#: The longest any Redis reply is waited for, by ttsq's clients and Celery's (`broker.py`): a
#: connection that went silent (a NAT or firewall forgot it) fails after this, and is replaced.
SOCKET_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 5

#: How both clients connect: bounded waits, and a few retries with backoff on a lost connection.
_CONNECTION: dict[str, Any] = {
    "socket_connect_timeout": CONNECT_TIMEOUT_S,
    "socket_timeout": SOCKET_TIMEOUT_S,
    "health_check_interval": 15,
    "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
}


def connect_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url(settings),
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=6),
        **_CONNECTION,
    )


#: The event-loop client's connections. A request holds one only for its round trip; a burst
#: beyond this many waits for one (up to `socket_timeout`) rather than failing.
ASYNC_MAX_CONNECTIONS = 64


def connect_redis_async(settings: Settings) -> aioredis.Redis:
    """The API's event-loop client (`redis.asyncio`), for the requests that only touch Redis:
    no thread-pool hop (a thread switch each way) per call."""
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url(settings),
        max_connections=ASYNC_MAX_CONNECTIONS,
        timeout=_CONNECTION["socket_timeout"],
        retry=AsyncRetry(ExponentialBackoff(cap=2.0, base=0.1), retries=6),
        **_CONNECTION,
    )
    return aioredis.Redis(connection_pool=pool)
