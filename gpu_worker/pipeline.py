"""The synthesis process's pipeline: the engine never waits on Redis, the broker or storage.

Three threads of the one synthesis process each do one step, so that between two jobs the
engine only takes the next one from a queue:

    Celery task (main thread)   engine thread               finisher thread
    claim job N+1, resolve      run the engine on job N     hand job N-1's audio to the
    its voices, check the                                   uploader, record its metrics,
    result cache, then wait                                 write the heartbeat
    until the engine takes it

When the engine has nothing to do (`idle`: one job at a time), the finisher makes the upload's
first attempt itself instead of handing it to the I/O worker (`Synthesizer.upload_here`).

The task returns, and Celery acks its message, once the engine has taken the job: from then
on the job store holds it (running, claimed by this worker, named in the heartbeat's
`holding`). If the process dies, the sweeper sends it again, as for any job a dead worker
held. At most one prepared job waits for the engine, so a second GPU worker on the same queue
still gets the rest.

With `batch` above 1 (TTS_ENGINE_BATCH), up to that many prepared jobs wait, and the engine
takes all that wait (up to `batch`) at once and runs them together (`Synthesizer.speak_jobs`):
the task returns once fewer than `batch` jobs wait, so a dubbing run's lines gather while the
engine works. Each job is still claimed by this worker and held in its heartbeat while it
waits, as the one waiting job is at batch 1.

Celery stops this process only between tasks; `close` then lets the engine finish the job it
has and the finisher hand everything on, so a recycle or a warm shutdown loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")  # a prepared job
S = TypeVar("S")  # what the engine made of it


@dataclass
class _Handoff(Generic[P]):
    job: P
    taken: threading.Event = field(default_factory=threading.Event)


class Pipeline(Generic[P, S]):
    def __init__(
        self,
        speak: Callable[[Sequence[P]], Sequence[S]],
        finish: Callable[[P, S], None],
        *,
        batch: int = 1,
        name: str = "ttsq",
    ) -> None:
        self.speak, self.finish, self.batch = speak, finish, batch
        self._next: queue.Queue[_Handoff[P] | None] = queue.Queue()
        self._spoken: queue.Queue[tuple[P, S] | None] = queue.Queue()
        #: Jobs given to the engine and not yet spoken (those it runs, those waiting), and
        #: of those the ones waiting, not yet taken.
        self._given = self._waiting = 0
        self._count = threading.Condition()
        # Daemons, so an exit that skips `close` never hangs on them (the sweeper then sends
        # what they held again); `close` is what drains them.
        self._engine = threading.Thread(target=self._run_engine, name=f"{name}-engine", daemon=True)
        self._finisher = threading.Thread(
            target=self._run_finisher, name=f"{name}-finisher", daemon=True
        )
        self._engine.start()
        self._finisher.start()

    def run(self, job: P) -> None:
        """Give the engine a job; return once it has taken it, or (batching) once fewer than
        `batch` jobs wait for it. At batch 1 this is the wait that keeps one prepared job
        ready while the engine is on the one before."""
        handoff = _Handoff(job)
        with self._count:
            self._given += 1
            self._waiting += 1
        self._next.put(handoff)
        with self._count:
            self._count.wait_for(lambda: handoff.taken.is_set() or self._waiting < self.batch)

    def idle(self) -> bool:
        """True when the engine has no job: neither one it runs nor one waiting for it."""
        with self._count:
            return self._given == 0

    def close(self) -> None:
        """Finish what was taken and hand it on, then stop both threads."""
        self._next.put(None)
        self._engine.join()
        self._spoken.put(None)
        self._finisher.join()

    def _take(self) -> list[_Handoff[P]] | None:
        """The next jobs: one (waiting for it), and up to `batch` in all of those waiting."""
        first = self._next.get()
        if first is None:
            return None
        taken = [first]
        while len(taken) < self.batch:
            try:
                more = self._next.get_nowait()
            except queue.Empty:
                break
            if more is None:  # closing: run what was taken, then stop
                self._next.put(None)
                break
            taken.append(more)
        with self._count:
            self._waiting -= len(taken)
            for handoff in taken:
                handoff.taken.set()
            self._count.notify_all()
        return taken

    def _run_engine(self) -> None:
        while (taken := self._take()) is not None:
            jobs = [handoff.job for handoff in taken]
            # `speak` reports the engine's errors in what it returns; anything it raises is a
            # bug, and the finisher still gets the jobs (with the error) so none is held.
            spoken = self.speak(jobs)
            with self._count:
                self._given -= len(jobs)
            for job, one in zip(jobs, spoken, strict=True):
                self._spoken.put((job, one))

    def _run_finisher(self) -> None:
        while (item := self._spoken.get()) is not None:
            try:
                self.finish(*item)
            except Exception:
                # The job stays claimed by this worker and is no longer held: the sweeper
                # sends it again after its grace period.
                log.exception("handing a job on failed; the sweeper will send it again")
