"""The reference `bench.submit_wrk` measures ttsq's submit against: a plain FastAPI endpoint
that only calls Celery's `delay()` (issue 14, target 3).

    .venv/bin/python -m bench.plain_delay_app --port 8001 --redis-url redis://127.0.0.1:6379/0

`POST /v1/jobs` takes `{"text": ...}` and sends a task to a queue no worker reads, on the
broker it is given; it answers 202 with the task's id. Served as `ttsq api` serves: one uvicorn
process, the asyncio loop, h11, INFO logging with the access log, the endpoint a plain `def`
(so it runs in the thread pool, as ttsq's blocking Redis calls do). Unlike `ttsq api` it lets
uvicorn make its listening socket.
"""

from __future__ import annotations

import argparse

import uvicorn
from celery import Celery
from fastapi import FastAPI
from pydantic import BaseModel

QUEUE = "bench-plain-delay"
TASK = "bench.plain_delay"


class Body(BaseModel):
    text: str


class Accepted(BaseModel):
    id: str


def create_app(redis_url: str) -> FastAPI:
    celery = Celery("bench-plain", broker=redis_url)
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_routes={TASK: {"queue": QUEUE}},
    )

    @celery.task(name=TASK)  # type: ignore[untyped-decorator]
    def speak(text: str) -> None:
        """Never runs: no worker reads the queue."""

    app = FastAPI()

    @app.post("/v1/jobs", status_code=202)
    def submit(body: Body) -> Accepted:
        return Accepted(id=speak.delay(body.text).id)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        create_app(args.redis_url),
        host=args.host,
        port=args.port,
        http="h11",
        log_level="info",
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=16 * 1024,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
