"""Where the CLI finds the service: `--url`, `TTS_SERVICE_URL`, or the stack `ttsq up` started.

`ttsq up` writes `stack.json` to its data directory while it runs: the URL it listens on and
the file its generated key is kept in (never the key itself). `say`, `batch`, `dub` and
`status` read it, so a stack started with another `TTS_PORT` is found from any shell that
shares the data directory.

The URL is `--url`, else `TTS_SERVICE_URL`, else the running stack's, else this machine's
settings (`TTS_PUBLIC_URL` or `http://TTS_HOST:TTS_PORT`). The key is `--key`, else the URL's
user-info password (`http://dub:<key>@host:6006`, as the dubbing worker's URL carries it),
else `TTS_API_KEY` (or the first of `TTS_API_KEYS`), else the running stack's key file, else
the data directory's `api_key`. The user-info is taken off the URL before it is used or shown.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from common.settings import Settings

STACK_FILE = "stack.json"


class StackFile(BaseModel):
    """What a running `ttsq up` says of itself."""

    url: str
    #: Where its generated key is kept (None: the key comes from its settings).
    key_file: str | None = None
    pid: int


def write_stack(settings: Settings, key_file: Path | None) -> Path:
    path = settings.data_dir / STACK_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    info = StackFile(
        url=settings.base_url,
        key_file=str(key_file.resolve()) if key_file else None,
        pid=os.getpid(),
    )
    path.write_text(info.model_dump_json(indent=2) + "\n")
    return path


def clear_stack(settings: Settings) -> None:
    (settings.data_dir / STACK_FILE).unlink(missing_ok=True)


def running_stack(settings: Settings) -> StackFile | None:
    """The stack file of a `ttsq up` that is still running; None otherwise."""
    path = settings.data_dir / STACK_FILE
    try:
        info = StackFile.model_validate(json.loads(path.read_text()))
        os.kill(info.pid, 0)  # still there?
    except (OSError, ValueError, ValidationError):
        return None
    return info


def split_key(url: str) -> tuple[str, str | None]:
    """`url` without its user-info, and the user-info's password (the key), if any."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/"), None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    bare = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
    return bare, unquote(parts.password) if parts.password else None


def endpoint(settings: Settings, url: str | None, key: str | None) -> tuple[str, str | None]:
    """The service's base URL (no user-info) and the key to send."""
    stack = None if url or os.environ.get("TTS_SERVICE_URL") else running_stack(settings)
    given = url or os.environ.get("TTS_SERVICE_URL") or (stack.url if stack else None)
    base, url_key = split_key(given or settings.base_url)
    if key or url_key:
        return base, key or url_key
    keys = settings.parsed_api_keys()
    if keys:
        return base, next(iter(keys))
    for path in (Path(stack.key_file) if stack and stack.key_file else None,
                 settings.data_dir / "api_key"):  # fmt: skip
        if path is not None and path.exists():
            return base, path.read_text().strip()
    return base, None
