"""Webhook delivery, on the I/O worker: the pump that sends due deliveries, and one attempt.

The pump (its own thread in `ttsq io`, every TTS_WEBHOOK_POLL_S) takes each due delivery from
the outbox by pushing its due time one lease ahead (atomically, so two I/O workers never both
take it), and sends a `ttsq.deliver_webhook` message with its id. If that message or its
worker is lost, the lease passes and the pump sends it again: a delivery is never stuck. It
also completes batches whose items have all ended (`BatchStore.complete_if_done`).

One attempt (`run_delivery`): the URL passes the address guard again (DNS may have changed);
POST with a TTS_WEBHOOK_TIMEOUT_S timeout, redirects not followed, signed per Standard
Webhooks with the same `webhook-id` on every attempt. 2xx delivers; timeouts, connection
errors, 429 and 5xx retry after the next step of TTS_WEBHOOK_RETRY_SCHEDULE_S (±jitter, at
least `Retry-After`); 410, any other answer, or the schedule's end fails it. Every attempt is
recorded. A delivery never touches its job's status.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast

import httpx
import redis
from standardwebhooks.webhooks import Webhook

from common import keys, metrics
from common.jobs.batches import BatchStore
from common.jobs.store import utcnow
from common.netguard import Pinned, Refused, parse_cidrs, pin
from common.retry import Retry
from common.schemas.webhooks import Attempt, Delivery, DeliveryState
from common.settings import Settings
from common.storage import Storage
from common.webhooks import secret_for

log = logging.getLogger(__name__)

#: How long a taken delivery is left to its message before the pump sends it again.
LEASE_MARGIN_S = 45.0
#: The longest `Retry-After` honoured.
MAX_RETRY_AFTER_S = 24 * 3600.0
#: Audio URLs in a payload outlive the retry schedule (S3 presigning allows 7 days at most).
MAX_URL_TTL_S = 7 * 24 * 3600

_TAKE = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""

Post = Callable[[Pinned, str, dict[str, str], float], httpx.Response]


def retry_schedule(settings: Settings) -> list[float]:
    return [float(s) for s in settings.webhook_retry_schedule_s.split(",") if s.strip()]


def retry_policy(settings: Settings) -> Retry:
    """`TTS_WEBHOOK_RETRY_SCHEDULE_S`, each wait jittered by `TTS_WEBHOOK_JITTER`."""
    return Retry(schedule=tuple(retry_schedule(settings)), jitter=settings.webhook_jitter)


def lease_s(settings: Settings) -> float:
    return settings.webhook_timeout_s + LEASE_MARGIN_S


@dataclass
class Pump:
    client: redis.Redis
    batches: BatchStore
    settings: Settings
    publish: Callable[[str], None]
    clock: Callable[[], datetime] = utcnow
    _take: Any = field(init=False)

    def __post_init__(self) -> None:
        self._take = self.client.register_script(_TAKE)

    def run(self) -> list[str]:
        """Send every due delivery once and complete finished batches; returns the ids sent."""
        for batch_id, seen in self.batches.to_check():
            self.batches.complete_if_done(batch_id, seen)
        now = self.clock().timestamp()
        due = cast(list[bytes], self.client.zrangebyscore(keys.WEBHOOKS_DUE, "-inf", now))
        sent = []
        for raw in due[:500]:
            delivery_id = raw.decode()
            if self._take(
                keys=[keys.WEBHOOKS_DUE], args=[delivery_id, now, now + lease_s(self.settings)]
            ):
                self.publish(delivery_id)
                sent.append(delivery_id)
        return sent


def _post(target: Pinned, body: str, headers: dict[str, str], timeout_s: float) -> httpx.Response:
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        request = client.build_request(
            "POST",
            target.url,
            content=body.encode(),
            headers={**headers, "Host": target.host_header},
            extensions={"sni_hostname": target.server_name},
        )
        return client.send(request)


def render(delivery: Delivery, storage: Storage, settings: Settings) -> str:
    """The body every attempt sends: the event, its time, and its data with audio URLs."""
    url_ttl = min(MAX_URL_TTL_S, max(settings.url_ttl_s, int(sum(retry_schedule(settings))) + 3600))

    def with_url(item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        key = out.pop("audio_key", None)
        if key is not None:
            out["audio_url"] = storage.url(str(key), url_ttl)
        return out

    data = with_url(delivery.data)
    if isinstance(data.get("items"), list):
        data["items"] = [with_url(item) for item in data["items"]]
    payload = {"type": delivery.event, "timestamp": delivery.created_at.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"))


def run_delivery(
    delivery_id: str,
    *,
    client: redis.Redis,
    settings: Settings,
    storage: Storage,
    clock: Callable[[], datetime] = utcnow,
    post: Post = _post,
) -> DeliveryState | None:
    """One attempt at one delivery; returns its state after, or None if it is gone."""
    raw = cast(bytes | None, client.get(keys.webhook_delivery(delivery_id)))
    if raw is None:
        client.zrem(keys.WEBHOOKS_DUE, delivery_id)
        return None
    delivery = Delivery.model_validate_json(raw)
    if delivery.state != DeliveryState.pending:
        client.zrem(keys.WEBHOOKS_DUE, delivery_id)
        return delivery.state
    if delivery.body is None:
        delivery.body = render(delivery, storage, settings)
    now = clock()
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    retry = False
    try:
        # Checked again now (DNS may have changed), and sent to the very address checked.
        target = pin(delivery.url, parse_cidrs(settings.fetch_allow_cidrs))
        webhook = Webhook(secret_for(delivery.owner, settings, client))
        headers = {
            "content-type": "application/json",
            "user-agent": "ttsq-webhooks",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(delivery.id, now, delivery.body),
        }
        response = post(target, delivery.body, headers, settings.webhook_timeout_s)
        status_code = response.status_code
        if status_code == 429 or status_code >= 500:
            retry, retry_after = True, _retry_after(response.headers.get("retry-after"), now)
            error = f"the receiver answered {status_code}"
        elif not 200 <= status_code < 300:
            why = "gone: no more attempts" if status_code == 410 else "not retried"
            error = f"the receiver answered {status_code} ({why})"
    except Refused as exc:
        error = f"the URL is refused: {exc}"
    except UnicodeError:  # a host name IDNA cannot encode: it will never resolve
        error = "the URL's host is not a valid name"
    except OSError as exc:  # the host did not resolve: DNS may come back
        retry, error = True, f"cannot resolve the host ({type(exc).__name__})"
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        retry, error = True, f"no answer: {type(exc).__name__}"
    delivery.attempts.append(
        Attempt(
            at=now,
            status_code=status_code,
            error=error,
            duration_s=round(time.monotonic() - started, 3),
        )
    )
    policy = retry_policy(settings)
    pipe = client.pipeline(transaction=True)
    if error is None:
        delivery.state, delivery.next_attempt_at = DeliveryState.delivered, None
        pipe.zrem(keys.WEBHOOKS_DUE, delivery.id)
    elif retry and policy.schedule and not policy.exhausted(len(delivery.attempts)):
        delay = max(policy.delay(len(delivery.attempts)), retry_after or 0.0)
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        pipe.zadd(keys.WEBHOOKS_DUE, {delivery.id: delivery.next_attempt_at.timestamp()})
    else:
        delivery.state, delivery.next_attempt_at = DeliveryState.failed, None
        pipe.zrem(keys.WEBHOOKS_DUE, delivery.id)
    pipe.set(keys.webhook_delivery(delivery.id), delivery.model_dump_json(), keepttl=True)
    # Outcome of this attempt: delivered, failed (given up), or pending (another will follow).
    metrics.add(pipe, metrics.WEBHOOK_ATTEMPTS, 1.0, str(delivery.state))
    pipe.execute()
    level = logging.INFO if delivery.state != DeliveryState.failed else logging.WARNING
    log.log(
        level,
        "[%s %s] webhook %s %s, attempt %s: %s",
        "batch" if delivery.event.startswith("batch.") else "job",
        delivery.subject_id,
        delivery.event,
        delivery.id,
        len(delivery.attempts),
        error or "delivered",
    )
    return delivery.state


def _retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` in seconds (delta or HTTP date), at most a day; None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
