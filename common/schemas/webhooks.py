"""Webhook deliveries as stored and as `GET /v1/jobs/{id}/webhooks` shows them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class DeliveryState(StrEnum):
    #: Waiting for its next attempt (or one is in flight).
    pending = "pending"
    #: The receiver answered 2xx.
    delivered = "delivered"
    #: Given up: 410, a refused address, an answer that is not retried, or retries exhausted.
    failed = "failed"


class Attempt(BaseModel):
    at: datetime
    #: The receiver's HTTP status; None when no answer came (timeout, connection error).
    status_code: int | None = None
    error: str | None = None
    duration_s: float


class Delivery(BaseModel):
    """One event to one URL; its `id` is the `webhook-id` of every attempt."""

    id: str
    owner: str
    subject_id: str
    event: str
    url: str
    created_at: datetime
    state: DeliveryState = DeliveryState.pending
    #: The job or batch as it was when the event happened (the payload's `data`, before the
    #: I/O worker adds audio URLs on the first attempt).
    data: dict[str, Any]
    #: The exact body, fixed on the first attempt so every retry sends the same bytes.
    body: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    next_attempt_at: datetime | None = None


class DeliveryList(BaseModel):
    data: list[Delivery]


class WebhookSecret(BaseModel):
    """`GET /v1/webhook-secret`: verify deliveries with any Standard Webhooks library."""

    secret: str
