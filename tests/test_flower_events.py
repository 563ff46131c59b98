"""What Flower sees of a job: the synthesis worker's task events, in order, from a real stack.

ttsq's workers send Celery's task events (Flower's view of the queue) through a consumer of
their own that flushes them after the task is on its way to the pool
(`common/worker/consumer.py`); the events must still all come, each in its order.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from celery import Celery

from common import keys
from tests.support.servers import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_flower_sees_a_synthesis_task_received_started_and_succeeded(stack: Stack) -> None:
    app = Celery(broker=stack.env["TTS_REDIS_URL"])
    events: list[dict[str, Any]] = []
    stop = threading.Event()

    def listen() -> None:
        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": events.append})
            for _ in receiver.itercapture(limit=None, timeout=None, wakeup=True):
                if stop.is_set():
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        # Workers beat every 2 s: one heard means the listener hears everything from now on.
        wait_for(lambda: any(e["type"] == "worker-heartbeat" for e in events), 20, "a heartbeat")
        job = stack.submit(text="Flower sees this.")
        assert stack.wait_end(job["id"])["status"] == "succeeded"

        def seen() -> list[dict[str, Any]] | None:
            received = [
                e
                for e in events
                if e["type"] == "task-received"
                and e["name"] == keys.TASK_SYNTHESIZE
                and job["id"] in e["args"]
            ]
            if not received:
                return None
            mine = [e for e in events if e.get("uuid") == received[0]["uuid"]]
            kinds = [e["type"] for e in mine]
            return mine if "task-succeeded" in kinds else None

        mine = wait_for(seen, 20, "the task's events")
    finally:
        stop.set()
    kinds = [e["type"] for e in mine]
    assert kinds == ["task-received", "task-started", "task-succeeded"]
    stamps = [e["timestamp"] for e in mine]
    assert stamps == sorted(stamps)
