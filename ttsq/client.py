"""A client for ttsq's own API, sync (`Client`) and async (`AsyncClient`), on httpx.

Configured as in the original design: `TTS_SERVICE_URL` (the API's base URL, such as
`https://region-xxx.autodl.pro:PORT`) and `TTS_API_KEY`. Results are the API's own models
(`JobResource`); every error answer is raised as an `ApiError` subclass carrying the error
envelope's `code`.

    with Client() as tts:
        job = tts.wait(tts.submit("你好，世界").id)
        tts.download(job, "hello.wav")
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from common.schemas.batches import BatchRequest, BatchResource
from common.schemas.job_request import JobRequest
from common.schemas.jobs import JobList, JobResource, JobStatus
from common.schemas.voices import VoiceList, VoiceResource

DEFAULT_URL = "http://127.0.0.1:8000"
#: Polling starts fast (a short job ends in well under a second) and slows to this.
POLL_FIRST_S, POLL_FACTOR, POLL_MAX_S = 0.2, 1.5, 5.0
#: Transient answers and refused connections are retried this many times on submit.
SUBMIT_RETRIES = 3
M = TypeVar("M", bound=BaseModel)


class TtsqClientError(Exception):
    """The root of every error this client raises."""

    code = "client_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Unreachable(TtsqClientError):
    """No answer: the connection was refused, dropped or timed out."""

    code = "unreachable"


class WaitTimeout(TtsqClientError):
    """`wait` gave up before the job ended; the job goes on."""

    code = "wait_timeout"


class JobNotSucceeded(TtsqClientError):
    """`download` of a job that ended without audio (its `error` says why)."""

    def __init__(self, job: JobResource) -> None:
        why = f"{job.error.code}: {job.error.message}" if job.error else job.status.value
        super().__init__(f"job {job.id} is {job.status.value} ({why})", code=job.status.value)
        self.job = job


class ApiError(TtsqClientError):
    """The API answered with an error envelope `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(f"{status} {code}: {message}", code=code)
        self.status, self.retry_after = status, retry_after


class InvalidRequest(ApiError):
    """400 or 422: the request itself is wrong; retrying it will not help."""


class Unauthorized(ApiError):
    """401 or 403: a missing or wrong API key."""


class NotFound(ApiError):
    """404: no such job for this key (another key's job is a 404 too)."""


class Conflict(ApiError):
    """409: the job's state forbids it (canceling an ended job, audio not ready yet)."""


class ServiceBusy(ApiError):
    """429 or 5xx: the service cannot take it now; `retry_after` says when to try again."""


class Health(BaseModel):
    """`GET /health`: liveness; newer APIs add whether an engine is loaded."""

    model_config = ConfigDict(extra="allow")

    status: str
    message: str | None = None
    model_loaded: bool | None = None
    backend: str | None = None


def _error_class(status: int) -> type[ApiError]:
    if status in (400, 422):
        return InvalidRequest
    if status in (401, 403):
        return Unauthorized
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status == 429 or status >= 500:
        return ServiceBusy
    return ApiError


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code < 400:
        return resp
    try:
        err = resp.json()["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{resp.status_code}", resp.text[:200] or resp.reason_phrase
    cls = _error_class(resp.status_code)
    raise cls(resp.status_code, code, message, _retry_after(resp))


def _job(resp: httpx.Response) -> JobResource:
    return _model(JobResource, resp)


def _request(request: JobRequest | str, fields: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(request, str):
        request = JobRequest.model_validate({"text": request, **fields})
    # Only what the caller set: a server of another version refuses fields it does not know.
    return request.model_dump(mode="json", exclude_unset=True, exclude_none=True)


def _submit_headers(wait_s: float | None, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Prefer": f"wait={int(wait_s)}"} if wait_s else {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _model(cls: type[M], resp: httpx.Response) -> M:
    try:
        return cls.model_validate_json(_check(resp).content)
    except ValidationError as exc:
        msg = f"the API answered something that is not a {cls.__name__}: {exc}"
        raise TtsqClientError(msg) from exc


def _job_id(job: JobResource | str) -> str:
    return job if isinstance(job, str) else job.id


def _write_whole(dest: Path, data: bytes) -> None:
    """Write through a temporary name: a crash never leaves a file that looks complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    part.write_bytes(data)
    part.replace(dest)


class _Base:
    def __init__(self, base_url: str | None, api_key: str | None, timeout: float) -> None:
        self.base_url = (base_url or os.environ.get("TTS_SERVICE_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("TTS_API_KEY")
        self.headers = {"X-Api-Key": key} if key else {}
        self.timeout = timeout

    @staticmethod
    def _next_delay(delay: float, error: ApiError | None) -> float:
        if error is not None and error.retry_after is not None:
            return error.retry_after
        return min(POLL_MAX_S, delay * POLL_FACTOR)


class Client(_Base):
    """The synchronous client. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {self.base_url}{path}: {exc!r}") from exc

    def health(self) -> Health:
        return Health.model_validate_json(_check(self._send("GET", "/health")).content)

    def submit(
        self,
        request: JobRequest | str,
        *,
        wait_s: float | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> JobResource:
        """Submit a job (text plus any `JobRequest` field). A refused connection, a 429 or a
        503 is retried after `Retry-After`: an error answer means nothing was stored (with an
        `idempotency_key`, any failure is retried: the key makes a resend the same job)."""
        body = _request(request, fields)
        headers = _submit_headers(wait_s, idempotency_key)
        return _job(self._post_retried("/v1/jobs", body, headers, idempotency_key is not None))

    def _post_retried(
        self, path: str, body: dict[str, Any], headers: dict[str, str], keyed: bool
    ) -> httpx.Response:
        delay = POLL_FIRST_S
        for attempt in range(SUBMIT_RETRIES + 1):
            try:
                return _check(self._send("POST", path, json=body, headers=headers))
            except (Unreachable, ServiceBusy) as exc:
                if attempt == SUBMIT_RETRIES or not (keyed or _safe_to_resend(exc)):
                    raise
                delay = self._next_delay(delay, exc if isinstance(exc, ApiError) else None)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def submit_batch(
        self, request: BatchRequest, *, idempotency_key: str | None = None
    ) -> BatchResource:
        """`POST /v1/batches`; with an `idempotency_key`, a rerun joins the same batch."""
        body = request.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        headers = _submit_headers(None, idempotency_key)
        resp = self._post_retried("/v1/batches", body, headers, idempotency_key is not None)
        return _model(BatchResource, resp)

    def get_batch(self, batch_id: str) -> BatchResource:
        return _model(BatchResource, self._send("GET", f"/v1/batches/{batch_id}"))

    def upload_voice(self, path: str | Path, *, name: str | None = None) -> VoiceResource:
        """`POST /v1/voices`: the same audio uploaded again answers with the same voice."""
        source = Path(path)
        files = {"file": (source.name, source.read_bytes(), "application/octet-stream")}
        data = {"name": name or source.stem}
        return _model(VoiceResource, self._send("POST", "/v1/voices", files=files, data=data))

    def list_voices(self) -> list[VoiceResource]:
        """Every voice this key may use (the shared ones and its own), over all pages."""
        voices: list[VoiceResource] = []
        params: dict[str, str | int] = {"limit": 100}
        while True:
            page = _model(VoiceList, self._send("GET", "/v1/voices", params=params))
            voices += page.data
            if page.next_cursor is None:
                return voices
            params["cursor"] = page.next_cursor

    def get(self, job: JobResource | str) -> JobResource:
        return _job(self._send("GET", f"/v1/jobs/{_job_id(job)}"))

    def list_jobs(self, *, status: JobStatus | None = None, limit: int = 20) -> JobList:
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status.value
        resp = _check(self._send("GET", "/v1/jobs", params=params))
        return JobList.model_validate_json(resp.content)

    def ready(self) -> dict[str, Any]:
        """`GET /ready`: queue depth, workers, problems."""
        return dict(_check(self._send("GET", "/ready")).json())

    def engine(self) -> dict[str, Any]:
        """`GET /v1/engine`: the running engines and every live worker's heartbeat."""
        return dict(_check(self._send("GET", "/v1/engine")).json())

    def cancel(self, job: JobResource | str) -> JobResource:
        return _job(self._send("POST", f"/v1/jobs/{_job_id(job)}/cancel"))

    def wait(self, job: JobResource | str, *, timeout: float = 600.0) -> JobResource:
        """Poll until the job ends (whatever the outcome), with backoff; an outage or a busy
        answer is waited out (after `Retry-After` when given) until `timeout`."""
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST_S
        while True:
            error: ApiError | None = None
            try:
                current = self.get(job)
                if current.status.terminal:
                    return current
            except (Unreachable, ServiceBusy) as exc:
                error = exc if isinstance(exc, ApiError) else None
            delay = self._next_delay(delay, error)
            if time.monotonic() + delay > deadline:
                raise WaitTimeout(f"job {_job_id(job)} did not end within {timeout:g}s")
            time.sleep(delay)

    def download(self, job: JobResource | str, dest: str | Path | None = None) -> bytes:
        """The job's audio (written whole to `dest` if given). A fresh URL is read first, so
        an old `JobResource` whose URL expired still works."""
        current = self.get(job)
        if current.audio is None:
            raise JobNotSucceeded(current)
        # A presigned or signed URL carries its own credential: never send the key along.
        try:
            resp = httpx.get(current.audio.url, timeout=self.timeout, follow_redirects=True)
        except httpx.TransportError as exc:
            raise Unreachable(f"GET {current.audio.url}: {exc!r}") from exc
        data = _check(resp).content
        if dest is not None:
            _write_whole(Path(dest), data)
        return data


class AsyncClient(_Base):
    """The asyncio client: the same methods as `Client`, awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise Unreachable(f"{method} {self.base_url}{path}: {exc!r}") from exc

    async def health(self) -> Health:
        return Health.model_validate_json(_check(await self._send("GET", "/health")).content)

    async def submit(
        self, request: JobRequest | str, *, wait_s: float | None = None, **fields: Any
    ) -> JobResource:
        body, headers = _request(request, fields), _submit_headers(wait_s)
        delay = POLL_FIRST_S
        for attempt in range(SUBMIT_RETRIES + 1):
            try:
                return _job(await self._send("POST", "/v1/jobs", json=body, headers=headers))
            except (Unreachable, ServiceBusy) as exc:
                if attempt == SUBMIT_RETRIES or not _safe_to_resend(exc):
                    raise
                delay = self._next_delay(delay, exc if isinstance(exc, ApiError) else None)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def get(self, job: JobResource | str) -> JobResource:
        return _job(await self._send("GET", f"/v1/jobs/{_job_id(job)}"))

    async def list_jobs(self, *, status: JobStatus | None = None, limit: int = 20) -> JobList:
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status.value
        resp = _check(await self._send("GET", "/v1/jobs", params=params))
        return JobList.model_validate_json(resp.content)

    async def cancel(self, job: JobResource | str) -> JobResource:
        return _job(await self._send("POST", f"/v1/jobs/{_job_id(job)}/cancel"))

    async def wait(self, job: JobResource | str, *, timeout: float = 600.0) -> JobResource:
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST_S
        while True:
            error: ApiError | None = None
            try:
                current = await self.get(job)
                if current.status.terminal:
                    return current
            except (Unreachable, ServiceBusy) as exc:
                error = exc if isinstance(exc, ApiError) else None
            delay = self._next_delay(delay, error)
            if time.monotonic() + delay > deadline:
                raise WaitTimeout(f"job {_job_id(job)} did not end within {timeout:g}s")
            await asyncio.sleep(delay)

    async def download(self, job: JobResource | str, dest: str | Path | None = None) -> bytes:
        current = await self.get(job)
        if current.audio is None:
            raise JobNotSucceeded(current)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as plain:
                resp = await plain.get(current.audio.url)
        except httpx.TransportError as exc:
            raise Unreachable(f"GET {current.audio.url}: {exc!r}") from exc
        data = _check(resp).content
        if dest is not None:
            _write_whole(Path(dest), data)
        return data


def _safe_to_resend(exc: TtsqClientError) -> bool:
    """Resend only what cannot have been stored: an error answer, or a refused connection.
    A timeout after sending may have stored the job; resending could make a duplicate."""
    if isinstance(exc, ApiError):
        return True
    cause = exc.__cause__
    return isinstance(cause, httpx.ConnectError)
