"""Job priorities: a worker starts every queued interactive job before any batch job.

One broker queue with kombu's Redis priority lists (`keys.broker_queue_lists`): a worker's
BRPOP names the lists in step order and pops the first that holds a message, so an
interactive job (step 0) is the next to start however many batch jobs (step 6) wait, but for
the one job a busy worker has already claimed for its engine (`gpu_worker/pipeline.py`). The
job index `keys.QUEUED` is scored so that a job's rank, its `queue_position`, is the same order.
"""

from __future__ import annotations

from common.schemas.job_request import JobRequest, Priority
from common.schemas.jobs import JobRecord

#: kombu's Redis transport serves the lowest step first; steps are `keys.BROKER_PRIORITY_STEPS`.
BROKER_STEP: dict[Priority, int] = {"interactive": 0, "batch": 6}
#: Added to a batch job's score in `keys.QUEUED` (seconds): more than any acceptance time
#: (year 2286), so every queued interactive job ranks before every batch job, and each
#: priority keeps acceptance order (to about 2 µs at this magnitude).
BATCH_SCORE_OFFSET = 1e10


def priority_of(request: JobRequest) -> Priority:
    return request.priority or "interactive"


def queued_score(job: JobRecord) -> float:
    """The job's score in `keys.QUEUED`: its rank among queued jobs is the start order."""
    offset = BATCH_SCORE_OFFSET if priority_of(job.request) == "batch" else 0.0
    return job.created_at.timestamp() + offset
