"""Whether a job waiting for the engine has ended meanwhile, known without a Redis round trip.

A job claimed while the engine runs the one before waits for it, and may be canceled while it
waits; the engine must not take it then. Reading the job just before the engine takes it
costs a round trip between two engine calls, and on a loaded machine that read was nearly all
of the GPU's idle time (`bench/gpu_busy.py`, 0.3 s engine: 0.988 busy with the read, 0.998
without). So the synthesis process listens instead: the job store announces every end on
`keys.JOB_ENDED_CHANNEL`, in the transaction that ends the job, and a thread here notes the ids.

An end is the only way a job leaves a live worker that holds it: the sweeper takes jobs over
only from a worker whose heartbeat key expired. So `ended` answers only when both held for the
whole wait: the subscription was up and answering (a PING every `PING_S`, its answer within
`LIVELY_S`), and this worker's heartbeat key never lapsed (`Heartbeat.unbroken_since`).
Otherwise it answers None, and the caller reads the job as before. Pub/sub is not durable, so
a subscription that dropped is trusted again only for jobs claimed after it came back.

An end announced in the last moments before the engine takes the job may still be on its way
(milliseconds; at most `LIVELY_S` on a stalled connection): the engine then runs a job that
was just canceled, and its audio is discarded when it is handed on (`mark_synthesized` refuses
an ended job), as for a job canceled while on the engine.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from common import keys
from common.jobs.heard import HeardEnds
from common.worker.heartbeat import Heartbeat

log = logging.getLogger(__name__)

#: How often the subscription is asked to answer, and how recent its last answer must be.
PING_S = 0.5
LIVELY_S = 1.5
#: Ends are remembered this long; a job that waited longer is read instead.
HORIZON_S = 600.0


class EndsHeard:
    def __init__(self, client: redis.Redis, heartbeat: Heartbeat) -> None:
        self.client, self.heartbeat = client, heartbeat
        self._lock = threading.Lock()
        self._ended = HeardEnds(HORIZON_S)
        #: Since when the subscription has been up, and when it last answered; None when down.
        self._up_since: float | None = None
        self._answered_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ttsq-ends-heard", daemon=True)

    def start(self) -> EndsHeard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def ended(self, job_id: str, since: float) -> bool | None:
        """Whether `job_id`, held by this worker since `since` (`time.monotonic`, taken before
        its claim), was announced ended; None when that cannot be told from here."""
        now = time.monotonic()
        with self._lock:
            up_since, answered_at = self._up_since, self._answered_at
            heard = job_id in self._ended
        if up_since is None or up_since > since or now - answered_at > LIVELY_S:
            return None
        if now - since > HORIZON_S or not self.heartbeat.unbroken_since(since):
            return None
        return heard

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(keys.JOB_ENDED_CHANNEL)
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                log.warning("job ends: subscription lost (%s); reading jobs meanwhile", exc)
            finally:
                with self._lock:
                    self._up_since = None
                pubsub.close()
            self._stop.wait(1.0)

    def _listen(self, pubsub: Any) -> None:
        pinged = 0.0
        while not self._stop.is_set():
            if time.monotonic() - pinged >= PING_S:
                pubsub.ping()
                pinged = time.monotonic()
            message = pubsub.get_message(timeout=PING_S)
            if message is None:
                continue
            now = time.monotonic()
            with self._lock:
                if message["type"] == "subscribe":
                    self._up_since = now
                elif message["type"] == "message":
                    self._note(message["data"], now)
                self._answered_at = now

    def _note(self, record: bytes, now: float) -> None:
        """Remember an ended job's id (`record` is its ended record)."""
        try:
            job_id = json.loads(record)["id"]
        except (ValueError, KeyError, TypeError):
            return
        self._ended.note(job_id, now)
