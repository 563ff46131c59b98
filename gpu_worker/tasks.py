"""The synthesis worker's one Celery task, a thin shell over `Synthesizer` and its pipeline.

`ttsq worker` runs it: prefork, one child process, one job at a time. The engine is loaded in
that child (`worker_process_init`), never in the parent that forks it. Other processes send
the task by name (`keys.TASK_SYNTHESIZE`, `common/broker.py`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from common import keys
from common.broker import make_celery
from common.settings import Settings
from common.worker.lifecycle import REDIS_DOWN, TASK_REDIS_RETRY, held_or_requeue
from gpu_worker import recycle, runtime
from gpu_worker.synthesis import Prepared

log = logging.getLogger(__name__)

settings = Settings()
app = make_celery(settings)


def _runtime() -> runtime.Runtime:
    return held_or_requeue(runtime.current)


#: Redis or the broker failed mid-task: the task is sent again (a few times, backing off). If
#: that fails too, the job is not lost: the sweeper finds it (outbox, heartbeat, lease).
@app.task(name=keys.TASK_SYNTHESIZE, bind=True, **TASK_REDIS_RETRY.celery_options(REDIS_DOWN))
def synthesize(self: Task, job_id: str) -> None:
    """Claim and prepare the job, then give it to the engine's thread; returns (and the
    message is acked) once the engine has taken it (`gpu_worker/pipeline.py`)."""
    rt = _runtime()
    rt.heartbeat.hold(job_id)
    handed = False
    try:
        prepared = rt.synthesizer.prepare(job_id)
        if isinstance(prepared, Prepared):
            rt.pipeline.run(prepared)
            handed = True
    finally:
        if not handed:
            rt.heartbeat.release(job_id)
    # The engine has just finished the job before this one: above the mark, this process is
    # replaced once this task returns, after the job in hand (`recycle.py`, `pipeline.py`).
    recycle.check_gpu_memory(rt.engine_memory_mb(), rt.settings.recycle_gpu_memory_mb)


@worker_process_init.connect
def _start_child(**_: Any) -> None:
    recycle.install()
    runtime.start(settings, app)


@worker_process_shutdown.connect
def _stop_child(**_: Any) -> None:
    runtime.stop()
