"""Celery's consumer, sending Flower's task events after the task is on its way to the pool.

Celery buffers a worker's task events (`task-received`, `task-started`, ...) and flushes them
(one PUBLISH, waited for) at the top of the event loop's next turn, which comes before the turn
writes the task to the pool's child process: every task waited for its own `task-received`
event to reach Redis first, about 0.45 ms on a 2-core VM (`bench/overhead.py`). Here the flush
is put off by one more turn, after the write. The events are the same, and carry the time they
were made, so Flower shows them as before.
"""

from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer


class Consumer(CeleryConsumer):  # type: ignore[misc]
    def on_send_event_buffered(self) -> None:
        hub = self.hub
        if hub:
            # This turn's callbacks are taken before they run: one scheduled from among them
            # runs in the turn after, once the pool's writes of this turn are done.
            hub.call_soon(hub.call_soon, self._flush_events_promise)
