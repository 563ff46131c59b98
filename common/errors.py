"""One error root with two branches: transient (retried with backoff) and permanent.

`code` is the stable, machine-readable name a client sees in `{"error": {"code", "message"}}`
on the API or in a failed job's `error`.
"""

from __future__ import annotations


class TtsqError(Exception):
    code = "internal_error"
    http_status = 500
    #: Whether trying again later may succeed (`common/retry.py` retries only these).
    retryable = False
    #: Where it reaches a client: the `Retry-After` it is answered with, in seconds.
    retry_after_s: int | None = None

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class TransientError(TtsqError):
    """Worth retrying with backoff: storage 5xx and timeouts, Redis blips, CUDA OOM."""

    code = "transient_error"
    http_status = 503
    retryable = True


class StorageUnavailable(TransientError):
    code = "storage_unavailable"


class PermanentError(TtsqError):
    """Retrying will not help: bad input, unknown voice, the model rejects the text."""

    code = "permanent_error"
    http_status = 422


class EngineInputError(PermanentError):
    """The engine refuses this input (text it cannot speak, a control it lacks)."""

    code = "engine_rejected_input"


class EngineLoadError(PermanentError):
    """The engine cannot start: missing weights, a package not installed."""

    code = "engine_load_failed"


# -- API errors (all permanent: the request is wrong, not the server) ----------------------


class ApiError(TtsqError):
    http_status = 400


class Unauthorized(ApiError):
    code = "unauthorized"
    http_status = 401


class NotFound(ApiError):
    code = "not_found"
    http_status = 404


class Conflict(ApiError):
    code = "conflict"
    http_status = 409


class Unprocessable(ApiError):
    code = "invalid_request"
    http_status = 422


class ServiceUnavailable(ApiError):
    code = "service_unavailable"
    http_status = 503
    retryable = True
