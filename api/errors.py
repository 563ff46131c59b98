"""One error envelope for every 4xx and 5xx: `{"error": {"code": ..., "message": ...}}`.

Messages name the field and the limit. Internal errors are logged with their traceback and
answered with a generic message: never `str(exc)` of something the client did not cause.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import TtsqError
from common.schemas.errors import ErrorBody, ErrorEnvelope

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


#: The envelope as OpenAPI shows it on every route.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 404, 409, 413, 415, 422, 503)
}


def envelope(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_response(exc: TtsqError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The envelope of one of our errors, with the headers its status calls for (a 401's
    `WWW-Authenticate`, `Retry-After` where the error names one) beside `headers`."""
    out = dict(headers or {})
    if exc.http_status == 401:
        out["WWW-Authenticate"] = "Bearer"
    if exc.retry_after_s is not None:
        out["Retry-After"] = str(exc.retry_after_s)
    if exc.http_status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return envelope(exc.http_status, exc.code, exc.message, out or None)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_errors(errors: Sequence[Any]) -> str:
    """Pydantic's errors as `field: problem; …` (the first five)."""
    messages = []
    for e in errors[:5]:
        kind, msg = e.get("type", ""), e.get("msg", "invalid").removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = "unknown field"
        elif kind == "missing":
            msg = "required"
        messages.append(f"{_field(tuple(e.get('loc', ())))}: {msg}")
    return "; ".join(messages)


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "invalid_json", "the body is not valid JSON"
    return 422, "invalid_request", describe_errors(errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(TtsqError)
    async def _ttsq(_: Request, exc: TtsqError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return envelope(*describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            return envelope(400, "invalid_json", "the body is not valid JSON: it is not UTF-8")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return envelope(exc.status_code, code, message, dict(exc.headers or {}) or None)

    @app.exception_handler(redis.RedisError)
    async def _redis(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("queue unavailable: %s", type(exc).__name__)
        return envelope(
            503,
            "queue_unavailable",
            "the job queue is unreachable; retry shortly",
            {"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope(500, "internal_error", "internal error; it has been logged")
