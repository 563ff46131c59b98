"""`ttsq up | api | worker | io | flower | say`.

`up` runs the whole stack; the others run one piece each, as the deployments supervise them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError

from common import keys
from common.errors import EngineLoadError
from common.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        sys.exit(f"ttsq: bad settings:\n{exc}")


def cmd_up(_: argparse.Namespace) -> int:
    from ttsq.stack import run_stack

    return run_stack(_settings())


def cmd_api(_: argparse.Namespace) -> int:
    from api.app import create_app
    from api.server import serve

    settings = _settings()
    try:
        app = create_app(settings)
    except SettingsError as exc:
        sys.exit(f"ttsq api: {exc}")
    return serve(app, settings)


def _celery_worker(role: str, argv: list[str]) -> int:
    os.environ["TTSQ_WORKER_ROLE"] = role
    from gpu_worker.tasks import app

    app.worker_main(["worker", "--loglevel", "INFO", "-E", *argv])
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    from gpu_worker.engines import resolve

    settings = _settings()
    try:
        engine_cls = resolve(settings.backend)
        preflight = getattr(engine_cls, "preflight", None)
        if preflight is not None:
            preflight(settings)  # checks files only; CUDA is touched in the child, never here
    except EngineLoadError as exc:
        sys.exit(f"ttsq worker: {exc.message}")
    from gpu_worker.recycle import NEVER_KB

    argv = [
        "-Q",
        keys.SYNTH_QUEUE,
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        "--hostname",
        "synth@%h",
        "--max-memory-per-child",
        str(NEVER_KB),
    ]
    if settings.max_jobs_per_child:
        argv += ["--max-tasks-per-child", str(settings.max_jobs_per_child)]
    return _celery_worker("synth", argv)


def cmd_io(_: argparse.Namespace) -> int:
    settings = _settings()
    argv = [
        "-Q",
        keys.IO_QUEUE,
        "--pool",
        "threads",
        "--concurrency",
        str(settings.io_concurrency),
        "--hostname",
        "io@%h",
    ]
    return _celery_worker("io", argv)


def cmd_flower(_: argparse.Namespace) -> int:
    from gpu_worker.tasks import app

    settings = _settings()
    # Flower has no auth of its own here: loopback only; reach it through an SSH tunnel.
    app.start(["flower", f"--port={settings.flower_port}", "--address=127.0.0.1"])
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    from ttsq.say import say

    return say(
        _settings(), text=args.text, out=args.output, voice=args.voice, url=args.url, key=args.key
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(prog="ttsq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run Redis, the API, both workers and Flower").set_defaults(fn=cmd_up)
    sub.add_parser("api", help="run the HTTP API").set_defaults(fn=cmd_api)
    sub.add_parser("worker", help="run the synthesis worker").set_defaults(fn=cmd_worker)
    sub.add_parser("io", help="run the I/O worker (uploads, sweeper)").set_defaults(fn=cmd_io)
    sub.add_parser("flower", help="run Flower on TTS_FLOWER_PORT").set_defaults(fn=cmd_flower)
    say = sub.add_parser("say", help="synthesise TEXT through the API into a WAV file")
    say.add_argument("text")
    say.add_argument("-o", "--output", default="out.wav")
    say.add_argument("--voice")
    say.add_argument("--url", help="API base URL (default: from settings)")
    say.add_argument("--key", help="API key (default: TTS_API_KEY or the data dir's api_key)")
    say.set_defaults(fn=cmd_say)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
