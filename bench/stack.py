"""The stack every benchmark runs on: `ttsq api`, `ttsq worker` and `ttsq io` with a Redis of
their own and an S3 server, on loopback, stopped with everything started for them."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from tests.support.servers import RedisServer, S3Server
from tests.support.stack import Stack

SCRIPTED = "tests.support.engines:ScriptedEngine"


@contextmanager
def bench_stack(
    *,
    storage: Literal["s3", "local"] = "s3",
    s3_settings: Callable[[S3Server], dict[str, str]] | None = None,
    **settings: str,
) -> Iterator[Stack]:
    """A started stack with `ScriptedEngine` unless `TTS_BACKEND` says otherwise; `storage`
    "local" runs it on local disk (what `make run` uses). `s3_settings` gives settings that
    need the S3 server, e.g. its endpoint through a delaying proxy."""
    tmp = Path(tempfile.mkdtemp(prefix="ttsq-bench-"))
    redis = RedisServer(tmp / "redis").start()
    s3 = S3Server().start() if storage == "s3" else None
    try:
        more = s3_settings(s3) if s3 is not None and s3_settings is not None else {}
        env = {"TTS_BACKEND": SCRIPTED, **more, **settings}
        # A real engine loads and warms up first: IndexTTS2 on tiny weights took 61 s on two
        # busy cores (CI), so the bound is for a stack that will never be ready.
        stack = Stack(tmp, redis, s3, db=0, **env).start(ready_s=600)
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        if s3 is not None:
            s3.stop()
        redis.stop()
