"""Batches at the boundary: `POST /v1/batches`, the stored record, `GET /v1/batches/{id}`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from common.schemas.job_request import (
    HttpUrlText,
    JobEventName,
    JobRequest,
    MetadataKey,
    MetadataValue,
    Strict,
)
from common.schemas.jobs import JobStatus

#: Items one batch may hold.
MAX_BATCH_ITEMS = 1000
BATCH_ID_PATTERN = r"^[0-9a-f]{32}$"
BatchEventName = JobEventName | Literal["batch.completed"]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class BatchItem(JobRequest):
    """A job request plus the client's own `ref` for it (a segment id); `priority` defaults
    to batch here."""

    ref: Ref

    def job_request(self) -> JobRequest:
        request = JobRequest.model_validate(self.model_dump(exclude={"ref"}, exclude_unset=True))
        return request if request.priority else request.model_copy(update={"priority": "batch"})


class BatchRequest(Strict):
    """The body of `POST /v1/batches`. One bad item refuses the whole batch."""

    items: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]
    #: Where to POST the batch's events; `job.*` events named here apply to every item that
    #: has no `webhook_url` of its own. Default: `batch.completed` only.
    webhook_url: HttpUrlText | None = None
    webhook_events: list[BatchEventName] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] = Field(
        default_factory=dict
    )

    def events(self) -> list[str]:
        return ["batch.completed"] if self.webhook_events is None else list(self.webhook_events)

    def item_requests(self) -> list[JobRequest]:
        """Each item's job request, with the batch's `job.*` events where it has no webhook."""
        job_events = [e for e in self.events() if e.startswith("job.")]
        out = []
        for item in self.items:
            request = item.job_request()
            if request.webhook_url is None and self.webhook_url is not None and job_events:
                request = request.model_copy(
                    update={"webhook_url": self.webhook_url, "webhook_events": job_events}
                )
            out.append(request)
        return out


class BatchRecord(BaseModel):
    """What the store keeps per batch; never sent to clients as is."""

    id: str
    owner: str
    created_at: datetime
    job_ids: list[str]
    refs: list[str]
    webhook_url: str | None = None
    webhook_events: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    canceled_at: datetime | None = None
    #: When the last item ended (and `batch.completed` was queued, if asked for).
    completed_at: datetime | None = None


class BatchItemResource(BaseModel):
    ref: str
    job_id: str
    status: JobStatus
    #: A fresh (presigned) URL of the item's audio, once it succeeded.
    audio_url: str | None = None
    error_code: str | None = None


class BatchResource(BaseModel):
    """A batch as a client sees it (`GET /v1/batches/{id}`)."""

    id: str
    status: Literal["running", "completed"]
    created_at: datetime
    canceled_at: datetime | None
    completed_at: datetime | None
    #: How many items are in each status.
    counts: dict[JobStatus, int]
    items: list[BatchItemResource]
    metadata: dict[str, str]
