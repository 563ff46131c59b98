"""What submits with webhooks and retries check at the door: a webhook URL passes the address
guard at submission, for a clear 400 (and again at each delivery, on the I/O worker: DNS may
change); `Idempotency-Key` is one printable token."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Header

from common.errors import ApiError
from common.jobs.idempotency import MAX_KEY_LENGTH
from common.netguard import Refused, checked_addresses, parse_cidrs
from common.settings import Settings


def check_client_url(settings: Settings, url: str, *, field: str, code: str) -> None:
    """A 400 naming `field` for a URL a worker would refuse to reach (it checks again)."""
    try:
        checked_addresses(url, parse_cidrs(settings.fetch_allow_cidrs))
    except Refused as exc:
        raise ApiError(f"{field}: {exc}", code=code) from None
    except (OSError, ValueError) as exc:  # no such name, DNS down; a host IDNA cannot encode
        host = urlsplit(url).hostname
        raise ApiError(
            f"{field}: cannot resolve {host!r} ({type(exc).__name__})", code=code
        ) from None


def check_webhook_url(settings: Settings, url: str, field: str = "webhook_url") -> None:
    check_client_url(settings, url, field=field, code="webhook_url_refused")


#: The `Idempotency-Key` header of `POST /v1/jobs` and `POST /v1/batches`.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="Retry safely: the same key and body answer with the same job or batch "
        "for 24 h (another body: 422). Scoped to the API key.",
    ),
]
