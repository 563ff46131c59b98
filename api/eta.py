"""The estimated wait of a queued job, as `GET /v1/jobs/{id}` reports it (`common/eta.py`)."""

from __future__ import annotations

from api.deps import Services
from common.eta import estimate_wait_s


def queued_eta_s(svc: Services, position: int | None, mean_s: float | None) -> float | None:
    """`mean_s`: the recent syntheses' mean engine seconds (`JobStore.place` reads both)."""
    if position is None:
        return None
    ready, busy = svc.engine_view.synth_workers()
    return estimate_wait_s(position, mean_s=mean_s, ready=ready, busy=busy)
