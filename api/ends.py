"""Learning that a job ended without polling: one Redis subscription per API process.

The job store publishes a job's ended record on `keys.JOB_ENDED_CHANNEL` in the transaction
that ends it. Each API process holds one subscription (a `redis.asyncio` connection, started
on first use, in the process's event loop) and wakes that job's waiters with the record, so
they answer without reading it. So 500 requests holding `Prefer: wait` cost Redis nothing
while they wait, and one that ends costs it nothing more.

Pub/sub is not durable: a message published while the subscription is down is lost. So each
time the subscription comes up, every waiter reads its job again; and while it is down, every
waiter reads once per `fallback_s` (polling, only then).

A waiter reads its job once when it starts, for an end announced before it was watching,
unless the caller took a `mark` before the record it holds was read or written: when the
subscription stayed up from that mark on, every end since was heard, either while watching or
before (the ids heard in the last `HEARD_S` are kept), so the record in hand is current unless
an end was heard for it. A request that waits for the job it has just stored (`Prefer: wait`,
`/synthesize`) then costs Redis nothing after the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from common import keys
from common.jobs.heard import HeardEnds

log = logging.getLogger(__name__)

#: Ended job ids are kept this long for a waiter that starts after the end was heard; a mark
#: older than this is not trusted (the waiter reads).
HEARD_S = 30.0


@dataclass(frozen=True)
class Mark:
    """A moment the subscription was up (`EndWatcher.mark`): which time it had come up, and
    when (`time.monotonic`)."""

    session: int
    at: float


class Woken(asyncio.Event):
    """Set when the job may have ended; `record` is its ended record (JSON) when the
    announcement brought it, None when the waiter must read it (a restart of the
    subscription, or polling while it is down)."""

    record: bytes | None = None


class EndWatcher:
    def __init__(self, url: str, *, fallback_s: float = 1.0, health_check_s: int = 15) -> None:
        self.url, self.fallback_s, self.health_check_s = url, fallback_s, health_check_s
        self.subscribed = False
        #: The process is stopping: every waiter answers now with what it has.
        self.stopping = False
        self._waiters: dict[str, set[Woken]] = {}
        #: Counts the times the subscription came up: a mark of another session is stale.
        self._session = 0
        #: The job ids heard ended in the last `HEARD_S`.
        self._heard = HeardEnds(HEARD_S)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def mark(self) -> Mark | None:
        """Now, if the subscription is up: taken before the record a waiter will hold is read
        or written, it lets `watch` skip the first read. None when it is down."""
        self._ensure_listening()
        return Mark(self._session, time.monotonic()) if self.subscribed else None

    @contextlib.contextmanager
    def watch(self, job_id: str, since: Mark | None = None) -> Iterator[Woken]:
        """An event set when `job_id` may have ended. It is set once at the start too, so the
        caller reads the record after subscribing and an end just before cannot be missed,
        unless `since` (a `mark` taken before the caller's record was read or written) shows
        that every end from then on was heard, and none for this job. The caller clears it,
        reads the record, and waits again."""
        self._ensure_listening()
        event = Woken()
        if not self._heard_all_since(since) or job_id in self._heard:
            event.set()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._waiters.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[job_id]

    def stop_waiting(self) -> None:
        """Wake every waiter for good (the server is shutting down): none holds it up."""
        self.stopping = True
        self._wake_all()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task

    def _heard_all_since(self, since: Mark | None) -> bool:
        return (
            since is not None
            and self.subscribed
            and since.session == self._session
            and time.monotonic() - since.at < HEARD_S
        )

    def _ensure_listening(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            # A new event loop (tests start one per client) strands the old one's waiters,
            # and its subscription is not this one.
            self._waiters.clear()
            self.subscribed = False
            self._loop = loop
            self._task = loop.create_task(self._listen(), name="ttsq-job-ends")

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=5, health_check_interval=self.health_check_s
            )
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(keys.JOB_ENDED_CHANNEL)
                    self._session += 1
                    self.subscribed = True
                    self._wake_all()  # whatever ended while we were not listening
                    while True:
                        message = await pubsub.get_message(timeout=self.health_check_s)
                        if message is not None:
                            self._wake(message["data"])
            except (redis.RedisError, OSError) as exc:
                if self.subscribed:
                    log.warning("job-end subscription lost (%s); waiters poll meanwhile", exc)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await client.aclose()
            self._wake_all()
            await asyncio.sleep(self.fallback_s)

    def _wake(self, data: bytes) -> None:
        # An id alone is what a worker of an older release announces: its waiters read.
        record = data if data.startswith(b"{") else None
        job_id = json.loads(data)["id"] if record is not None else data.decode()
        self._heard.note(job_id, time.monotonic())
        for event in self._waiters.get(job_id, ()):
            event.record = record
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()
