"""A guarded HTTP(S) fetch for audio a client points at (`prompt_audio_url`, `voice_url`).

Runs on the worker, never in the API process. The URL is a client's, so it is treated as
hostile: http(s) only; every address its host resolves to must be public (not loopback,
private, link-local, multicast, reserved or a cloud metadata address) unless allow-listed in
TTS_FETCH_ALLOW_CIDRS; the connection goes to the address that was checked (a DNS answer that
changes between check and connect cannot redirect it); each redirect is checked like the first
URL; the body is capped in bytes and the whole fetch in time. Transient failures (connect
errors, timeouts, 429, 5xx) are retried a few times with backoff.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from common.errors import PermanentError, TransientError
from common.netguard import IPNetwork, Refused, Resolver, pin, resolve
from common.retry import Retry

MAX_REDIRECTS = 5
#: A transient failure (connection, timeout, 429, 5xx) is tried again: 0.5 s, then 1 s.
RETRY = Retry(base_s=0.5, cap_s=2.0, attempts=3)


class FetchRefused(PermanentError):
    """The URL may not be fetched, or its answer is not usable; retrying will not help."""

    code = "fetch_failed"


class FetchUnavailable(TransientError):
    code = "fetch_failed"


@dataclass
class Fetched:
    body: bytes
    etag: str | None
    not_modified: bool = False


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "?"


def fetch(
    url: str,
    *,
    allow: Sequence[IPNetwork],
    max_bytes: int,
    timeout_s: float,
    etag: str | None = None,
    resolver: Resolver = resolve,
) -> Fetched:
    """GET `url` under the guard; with `etag`, an unchanged object answers `not_modified`."""
    return RETRY.run(
        lambda: _fetch_once(url, allow, max_bytes, timeout_s, etag, resolver),
        when=lambda exc: isinstance(exc, FetchUnavailable),
    )


def _fetch_once(
    url: str,
    allow: Sequence[IPNetwork],
    max_bytes: int,
    timeout_s: float,
    etag: str | None,
    resolver: Resolver,
) -> Fetched:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            request = _pinned_request(client, url, allow, resolver, etag)
            left = deadline - time.monotonic()
            if left <= 0:
                raise FetchUnavailable(
                    f"fetching from {host_of(url)} took longer than {timeout_s:g}s"
                )
            try:
                response = client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise FetchUnavailable(
                    f"cannot fetch from {host_of(url)}: {type(exc).__name__}"
                ) from exc
            try:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code == 304 and etag:
                    return Fetched(b"", etag, not_modified=True)
                if response.status_code == 429 or response.status_code >= 500:
                    raise FetchUnavailable(f"{host_of(url)} answered {response.status_code}")
                if response.status_code != 200:
                    raise FetchRefused(f"{host_of(url)} answered {response.status_code}")
                return Fetched(
                    _read_capped(response, url, max_bytes, deadline), response.headers.get("etag")
                )
            finally:
                response.close()
    raise FetchRefused(f"{host_of(url)}: more than {MAX_REDIRECTS} redirects")


def _pinned_request(
    client: httpx.Client,
    url: str,
    allow: Sequence[IPNetwork],
    resolver: Resolver,
    etag: str | None,
) -> httpx.Request:
    """A request to the checked address of `url`'s host, with the host's name kept for the
    Host header and TLS (SNI and certificate checks)."""
    try:
        target = pin(url, allow, resolver)
    except Refused as exc:
        raise FetchRefused(str(exc)) from exc
    except OSError as exc:
        raise FetchUnavailable(f"cannot resolve {host_of(url)}: {exc}") from exc
    headers = {"Host": target.host_header, "Accept": "audio/*"}
    if etag:
        headers["If-None-Match"] = etag
    return client.build_request(
        "GET", target.url, headers=headers, extensions={"sni_hostname": target.server_name}
    )


def _read_capped(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"{host_of(url)} sent {declared} bytes; the limit is {max_bytes}")
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise FetchRefused(f"{host_of(url)} sent more than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchUnavailable(f"fetching from {host_of(url)} took too long")
    except httpx.TransportError as exc:
        raise FetchUnavailable(f"cannot fetch from {host_of(url)}: {type(exc).__name__}") from exc
    return bytes(body)
