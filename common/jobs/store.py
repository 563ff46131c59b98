"""The job store: job records in Redis and every status change, one method each.

`JobStore` is its parts, one module each (`common/jobs/`): `reads`, `create`, `transitions`,
`sweep`, all on `base.StoreBase`, whose `change` is the one place a record changes.
"""

from __future__ import annotations

from common.jobs.base import Message, StoreBase, new_job_id, utcnow
from common.jobs.create import REUSABLE, Creation
from common.jobs.reads import Reads
from common.jobs.sweep import SweepViews
from common.jobs.transitions import Claim, ClaimResult, Transitions

__all__ = [
    "REUSABLE",
    "Claim",
    "ClaimResult",
    "JobStore",
    "Message",
    "StoreBase",
    "new_job_id",
    "utcnow",
]


class JobStore(Reads, Creation, Transitions, SweepViews):
    """Every read and change of a job; built once per process on its Redis client(s)."""
