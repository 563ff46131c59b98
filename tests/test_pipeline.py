"""The synthesis pipeline's three steps (`gpu_worker/pipeline.py`), with plain functions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from gpu_worker.pipeline import Pipeline


def each(speak: Callable[[str], str]) -> Callable[[Sequence[str]], list[str]]:
    """A per-job engine as the pipeline's batch step."""
    return lambda jobs: [speak(job) for job in jobs]


def test_the_next_job_is_handed_over_while_the_engine_runs_the_current_one() -> None:
    engine_free, events = threading.Event(), list[str]()

    def speak(job: str) -> str:
        events.append(f"start {job}")
        if job == "a":
            engine_free.wait(5)
        return job.upper()

    pipeline = Pipeline(each(speak), lambda job, out: events.append(f"finish {job} {out}"))
    pipeline.run("a")  # taken at once: the engine was idle
    waiting = threading.Thread(target=pipeline.run, args=("b",))
    waiting.start()
    # A duration, not a wait: time in which a "b" handed over too soon would have returned.
    time.sleep(0.2)
    assert waiting.is_alive()  # "b" waits, prepared, while "a" is on the engine
    engine_free.set()
    waiting.join(5)
    assert not waiting.is_alive()
    pipeline.close()
    assert events.index("start b") > events.index("start a")
    assert sorted(e for e in events if e.startswith("finish")) == ["finish a A", "finish b B"]


def test_close_finishes_what_the_engine_took_and_hands_it_on() -> None:
    finished = list[str]()

    def speak(job: str) -> str:
        time.sleep(0.3)  # the engine's time on the job: `close` must wait it out
        return job

    pipeline = Pipeline(each(speak), lambda job, _: finished.append(job))
    pipeline.run("last")
    pipeline.close()
    assert finished == ["last"]


def test_a_failing_hand_on_does_not_stop_the_next_jobs() -> None:
    finished = list[str]()

    def hand_on(job: str, _: str) -> None:
        if job == "bad":
            raise RuntimeError("Redis is gone")
        finished.append(job)

    pipeline = Pipeline(each(lambda job: job), hand_on)
    for job in ("bad", "good"):
        pipeline.run(job)
    pipeline.close()
    assert finished == ["good"]


def test_the_engine_is_idle_only_with_no_job_running_or_waiting() -> None:
    release = threading.Event()
    seen: list[bool] = []
    pipeline: Pipeline[str, str] = Pipeline(
        each(lambda job: release.wait(5) and job), lambda job, spoken: seen.append(pipeline.idle())
    )
    assert pipeline.idle()
    pipeline.run("a")  # taken: the engine runs it until released
    assert not pipeline.idle()
    release.set()
    pipeline.close()
    assert seen == [True] and pipeline.idle()  # the finisher saw an engine with nothing to do


def test_batching_gathers_the_jobs_that_wait_while_the_engine_runs() -> None:
    engine_free, engine_on_a, batches = threading.Event(), threading.Event(), list[list[str]]()

    def speak(jobs: Sequence[str]) -> list[str]:
        batches.append(list(jobs))
        if jobs[0] == "a":
            engine_on_a.set()
            engine_free.wait(5)
        return [job.upper() for job in jobs]

    finished = list[str]()
    pipeline = Pipeline(speak, lambda job, out: finished.append(out), batch=3)
    pipeline.run("a")  # returns at once: fewer than 3 wait
    assert engine_on_a.wait(5)  # the engine took it alone, and is held on it
    for job in ("b", "c"):  # each returns at once: fewer than 3 wait
        pipeline.run(job)
    third = threading.Thread(target=pipeline.run, args=("d",))
    third.start()
    time.sleep(0.2)  # a duration: a "d" let through with 3 waiting would have returned
    assert third.is_alive()
    engine_free.set()
    third.join(5)
    pipeline.close()
    assert batches == [["a"], ["b", "c", "d"]]
    assert finished == ["A", "B", "C", "D"]
