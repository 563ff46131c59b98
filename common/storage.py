"""Where finished audio lives: a local directory or any S3-compatible bucket.

Object keys derive from the job id (`audio/<job id>.wav`), so a job that runs twice overwrites
its own object rather than leaving two. The API hands out URLs that expire: presigned GETs for
S3, HMAC-signed `/v1/files/...` URLs for local disk.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlencode

from common.errors import NotFound, StorageUnavailable
from common.settings import Settings

KEY_PATTERN = re.compile(
    r"^(audio/[0-9a-f]{32}\.(wav|flac|mp3|opus|pcm_s16le)|voices/[0-9a-f]{64}\.wav)$"
)
#: What each delivered format is served as.
CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "pcm_s16le": "application/octet-stream",  # audio/L16 would say big-endian
}
#: Where the write check puts (and at once deletes) its probe objects.
PROBE_PREFIX = ".ttsq-probe/"


def audio_key(job_id: str, fmt: str = "wav") -> str:
    return f"audio/{job_id}.{fmt}"


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def url(self, key: str, ttl_s: int) -> str: ...
    def check_writable(self) -> None: ...


class LocalStorage:
    """Files under `<data dir>/objects`, served by the API through signed, expiring URLs."""

    def __init__(self, root: Path, *, base_url: str, signing_key: bytes) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self.signing_key = signing_key

    def path(self, key: str) -> Path:
        if not KEY_PATTERN.match(key):
            raise NotFound("no such file", code="file_not_found")
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path(key)
        tmp = target.with_suffix(f".{secrets.token_hex(4)}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)  # readers see the whole file or none
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
            raise StorageUnavailable(f"local storage write failed: {exc.strerror}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except OSError as exc:
            raise StorageUnavailable(f"local storage read failed: {exc.strerror}") from exc

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def signature(self, key: str, expires: int) -> str:
        msg = f"{key}\n{expires}".encode()
        return hmac.new(self.signing_key, msg, hashlib.sha256).hexdigest()

    def url(self, key: str, ttl_s: int) -> str:
        expires = int(time.time()) + ttl_s
        query = urlencode({"expires": expires, "sig": self.signature(key, expires)})
        return f"{self.base_url}/v1/files/{key}?{query}"

    def verify(self, key: str, expires: int, sig: str) -> Path:
        """The file a signed URL names, if the signature holds and has not expired."""
        if expires < time.time() or not hmac.compare_digest(self.signature(key, expires), sig):
            raise NotFound("this file link is invalid or has expired", code="file_not_found")
        path = self.path(key)
        if not path.is_file():
            raise NotFound("no such file", code="file_not_found")
        return path

    def check_writable(self) -> None:
        probe = self.root / f".probe-{secrets.token_hex(4)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageUnavailable(f"local storage not writable: {exc.strerror}") from exc


class S3Storage:
    """Any S3-compatible endpoint (AWS, MinIO, R2); presigned GET URLs."""

    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        def secret(value: object) -> str | None:
            return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]

        self.bucket = settings.s3_bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=secret(settings.s3_access_key_id),
            aws_secret_access_key=secret(settings.s3_secret_access_key),
            # Our own backoff (the upload task's) decides how long to keep trying.
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                signature_version="s3v4",
            ),
        )

    def _call(self, what: str, fn: object, **kwargs: object) -> object:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)  # type: ignore[operator]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise StorageUnavailable(f"storage {what} failed: {code}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"storage {what} failed: {type(exc).__name__}") from exc

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call("upload", self.client.put_object, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        answer = cast(dict[str, Any], self._call("download", self.client.get_object, Key=key))
        return cast(bytes, answer["Body"].read())

    def delete(self, key: str) -> None:
        self._call("delete", self.client.delete_object, Key=key)

    def url(self, key: str, ttl_s: int) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s
            )
        )

    def check_writable(self) -> None:
        """Write and delete a small probe object: a readable bucket may still refuse writes."""
        key = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
        self._call("write check", self.client.put_object, Key=key, Body=b"ok")
        self._call("write check", self.client.delete_object, Key=key)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (development and tests; production makes its own)."""
        try:
            self._call("bucket check", self.client.head_bucket)
        except StorageUnavailable:
            self._call("bucket creation", self.client.create_bucket)


def signing_key(settings: Settings) -> bytes:
    """TTS_SIGNING_KEY, or a random key kept in the data dir so URLs survive restarts.

    Several processes may start at once: the key is written whole to a private temporary file
    and linked into place, so whoever loses the race reads the winner's complete key.
    """
    if settings.signing_key is not None:
        return settings.signing_key.get_secret_value().encode()
    path = settings.data_dir / "signing.key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".signing.key.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def storage_problem(settings: Settings) -> str | None:
    """Why this process cannot store audio, or None (the I/O worker checks before it starts)."""
    try:
        storage = make_storage(settings)
        if isinstance(storage, S3Storage):
            storage.ensure_bucket()
        storage.check_writable()
    except StorageUnavailable as exc:
        return exc.message
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def make_storage(settings: Settings) -> LocalStorage | S3Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    return LocalStorage(
        settings.data_dir / "objects", base_url=settings.base_url, signing_key=signing_key(settings)
    )
