"""The estimated wait of a queued job, as `GET /v1/jobs/{id}` reports it (`common/eta.py`)."""

from __future__ import annotations

from api.deps import Services
from common.eta import estimate_wait_s, mean_synthesis_s


def queued_eta_s(svc: Services, position: int | None, mean_s: float | None = None) -> float | None:
    """`mean_s`: the recent mean engine time, if the caller read it (else it is read here)."""
    if position is None:
        return None
    ready, busy = svc.engine_view.synth_workers()
    if mean_s is None:
        mean_s = mean_synthesis_s(svc.store.redis)
    return estimate_wait_s(position, mean_s=mean_s, ready=ready, busy=busy)
