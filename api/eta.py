"""The estimated wait of a queued job, as `GET /v1/jobs/{id}` reports it (`common/jobs/eta.py`)."""

from __future__ import annotations

from api.deps import Services
from api.engine_check import Beats
from common.jobs.eta import estimate_wait_s


def queued_eta_s(
    svc: Services, position: int | None, mean_s: float | None, beats: Beats | None = None
) -> float | None:
    """`mean_s`: the recent syntheses' mean engine seconds (`JobStore.place_async` reads both);
    `beats`: the live workers (`EngineView.beats_async`, for an event-loop caller)."""
    if position is None:
        return None
    ready, busy = svc.engine_view.synth_workers(beats)
    return estimate_wait_s(position, mean_s=mean_s, ready=ready, busy=busy)
