"""Refuse oversized headers, and oversized or non-JSON bodies before they are read whole.

A pure ASGI middleware. Headers beyond what the HTTP parser buffers (about 64 KiB) never get
here: uvicorn closes the connection.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
MAX_HEADER_BYTES = 16 * 1024
#: A refused body up to this size is read and dropped before the answer, so a client still
#: sending it gets the 413 rather than a connection reset; a larger one is cut off at once.
DRAIN_MAX_BYTES = 1024 * 1024


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        uploads: dict[str, int] | None = None,
        larger: dict[str, int] | None = None,
    ) -> None:
        self.app, self.max_bytes = app, max_bytes
        #: Paths that take a multipart upload, each with its own limit (`POST /v1/voices`).
        self.uploads = uploads or {}
        #: JSON paths with a limit of their own (batches).
        self.limits = {**(larger or {}), **self.uploads}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) for k, v in scope["headers"])
            if size > MAX_HEADER_BYTES:
                await _refuse(
                    send,
                    431,
                    "request_header_too_large",
                    f"the headers exceed the limit of {MAX_HEADER_BYTES} bytes",
                )
                return
        if scope["type"] != "http" or scope["method"].encode() not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        max_bytes = self.limits.get(scope["path"], self.max_bytes)
        if length is not None and (not length.isdigit() or int(length) > max_bytes):
            if length.isdigit() and int(length) <= DRAIN_MAX_BYTES:
                await _drain(receive)
            await _refuse(
                send,
                413,
                "payload_too_large",
                f"the body exceeds the limit of {max_bytes} bytes",
            )
            return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = length not in (None, b"0") or headers.get(b"transfer-encoding")
        if has_body and scope["path"] in self.uploads:
            if ctype != b"multipart/form-data":
                await _refuse(
                    send,
                    415,
                    "unsupported_media_type",
                    "the body must be a form upload (Content-Type: multipart/form-data)",
                )
                return
        elif has_body and ctype != b"application/json":
            await _refuse(
                send,
                415,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            )
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    # FastAPI re-raises HTTPException from body parsing: the envelope follows.
                    raise HTTPException(413, f"the body exceeds the limit of {max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
