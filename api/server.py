"""`ttsq api`'s HTTP server: uvicorn, with slow and idle clients bounded.

uvicorn times out only a keep-alive connection that sends nothing; a client that sends its
headers or body a byte at a time holds a socket for ever, and enough of them exhaust the
process's file descriptors. Here each connection gets a deadline for a request's headers and
one for its body, and the number of open connections is capped below the open-file limit.

When descriptors run out anyway, CPython 3.11's event loop keeps calling `accept()` after the
first `EMFILE`, logging and scheduling a retry for every pending connection (thousands of lines
a second, and thousands of retries that each fail again at shutdown). The listening socket
here ends that round after the first failure, and the line that remains is rate-limited.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import resource
import socket
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from common.settings import Settings

log = logging.getLogger(__name__)

#: Descriptors the process needs besides client connections: Redis, storage, logs, the listener.
FD_HEADROOM = 128
ACCEPT_ERROR = "socket.accept() out of system resource"
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class ListeningSocket(socket.socket):
    """A listening socket whose `accept()` ends the event loop's accept round after a failure
    for want of descriptors (the loop has already logged it and scheduled one retry)."""

    exhausted = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self.exhausted:
            self.exhausted = False
            raise ConnectionAbortedError("out of descriptors; the loop retries in a moment")
        try:
            return super().accept()
        except OSError as exc:
            self.exhausted = exc.errno in OUT_OF_RESOURCES
            raise


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named, not 0: asyncio sets TCP_NODELAY only on sockets whose `proto` says
    # TCP, and accepted sockets copy it. Without it a response's body waited for the client's
    # delayed ACK of its headers: 40 ms on every answer after a connection's first.
    sock = ListeningSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"ttsq api: cannot listen on {host}:{port}: {exc.strerror}") from exc
    log.info("listening on %s:%d", host, port)
    return sock


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers and body, and a cap on
    open connections: beyond it, the connection that has waited longest for its headers is
    closed to make room, or, when every connection is mid-request, the new one gets a 503."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    max_connections = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: "head" while waiting for a request's headers, "body" while reading its body.
        self.phase: str | None = None
        self.waiting_since = 0.0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_phase(None)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """Start the deadline of the phase the connection is in, if it just entered it."""
        state = self.conn.their_state
        if self.transport.is_closing():
            self._set_phase(None)
        elif state is h11.IDLE:
            self._set_phase("head")
        elif state is h11.SEND_BODY:
            self._set_phase("body")
        else:
            self._set_phase(None)

    def _set_phase(self, phase: str | None) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if phase == "head":
            self.waiting_since = time.monotonic()
            self._deadline = self.loop.call_later(self.header_timeout_s, self._close)
        elif phase == "body":
            self._deadline = self.loop.call_later(self.body_timeout_s, self._body_too_slow)

    def _close(self) -> None:
        self._set_phase(None)
        self.transport.close()

    def _body_too_slow(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The application is still waiting for the body: it sees a disconnect and its
            # answer goes nowhere; the client gets this one.
            cycle.disconnected = True
            cycle.message_event.set()
            message = f"the request body did not arrive within {self.body_timeout_s:g} s"
            self.transport.write(_response(408, "request_timeout", message))
        self._close()

    def _make_room(self) -> None:
        waiting = [
            p
            for p in self.connections
            if isinstance(p, GuardedH11Protocol) and p is not self and p.phase == "head"
        ]
        if waiting:
            min(waiting, key=lambda p: p.waiting_since)._close()
            return
        message = f"the server holds its limit of {self.max_connections} connections"
        self.transport.write(_response(503, "too_many_connections", message, retry_after=1))
        self._close()


def _response(status: int, code: str, message: str, retry_after: int | None = None) -> bytes:
    """A whole response, written past h11 (which cannot answer before a request has come)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    reason = HTTPStatus(status).phrase
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RateLimitedAcceptErrors(logging.Filter):
    """Let the event loop's accept-error line through once per `every_s`, with a count of the
    ones held back, instead of once per pending connection per attempt."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last = -every_s
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_ERROR):
            return True
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._held += 1
            return False
        if self._held:
            record.msg = f"{record.msg}\n({self._held} more like it not logged)"
        self._last, self._held = now, 0
        return True


def fit_open_files(max_connections: int) -> None:
    """Raise the soft open-file limit toward the hard one so the connection cap fits under it."""
    need = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning(
            "the open-file limit is %d, below TTS_MAX_CONNECTIONS=%d plus %d for the process "
            "itself: connections beyond it are refused by the kernel, not by ttsq; lower "
            "TTS_MAX_CONNECTIONS or raise the limit (ulimit -n, LimitNOFILE=)",
            soft,
            max_connections,
            FD_HEADROOM,
        )


#: How long a stopping server lets requests in flight finish. Waits (`Prefer: wait`, the
#: drop-in routes) are answered at once when it stops, so this bounds only ordinary requests.
GRACEFUL_S = 1


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose shutdown closes the listener and then answers every request
    waiting for a job at once (503 with `Retry-After` on the drop-in routes: their clients
    retry, and the retry joins the job) instead of holding the stop for the graceful timeout."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # first: no new request is accepted while waits are answered
        self.on_stop()
        await super().shutdown(sockets)


def serve(app: FastAPI, settings: Settings) -> int:
    """Serve until stopped; the exit status for `ttsq api`."""
    fit_open_files(settings.max_connections)
    logging.getLogger("asyncio").addFilter(RateLimitedAcceptErrors())
    protocol = type(
        "TtsqH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "body_timeout_s": settings.body_timeout_s,
            "max_connections": settings.max_connections,
        },
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_S,
        h11_max_incomplete_event_size=16 * 1024,
    )
    server = DrainingServer(config, app.state.services.ends.stop_waiting)
    server.run(sockets=[listen(settings.host, settings.port)])
    return 0 if server.started else 3
