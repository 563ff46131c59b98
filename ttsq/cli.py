"""`ttsq up | api | worker | io | flower | say | batch | status | doctor`.

`up` runs the whole stack; the others run one piece each, as the deployments supervise them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pydantic import ValidationError

from common import keys
from common.errors import EngineLoadError
from common.settings import Settings, SettingsError, is_loopback


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        sys.exit(f"ttsq: bad settings:\n{exc}")


def _require_redis(settings: Settings, piece: str, wait_s: float = 10.0) -> None:
    """Outside `ttsq up`, Redis is named and reachable at start, or the piece exits saying so
    (a supervisor restarts it with back-off). A running piece rides out an outage instead."""
    import redis

    from common.redis_client import connect_redis

    if not settings.redis_url:
        sys.exit(
            f"ttsq {piece}: TTS_REDIS_URL is not set (only `ttsq up` starts an embedded Redis)"
        )
    client = connect_redis(settings)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                where = client.connection_pool.connection_kwargs
                sys.exit(
                    f"ttsq {piece}: cannot reach Redis at {where.get('host')}:"
                    f"{where.get('port')}: {exc}"
                )
            time.sleep(0.5)


def cmd_up(_: argparse.Namespace) -> int:
    from ttsq.stack import run_stack

    return run_stack(_settings())


def cmd_api(_: argparse.Namespace) -> int:
    from api.app import create_app
    from api.server import serve

    settings = _settings()
    _require_redis(settings, "api")
    try:
        app = create_app(settings)
    except SettingsError as exc:
        sys.exit(f"ttsq api: {exc}")
    return serve(app, settings)


def _celery_worker(role: str, argv: list[str]) -> int:
    """Run the Celery worker of `role` (its package's `tasks.app`: "synth" is `gpu_worker`,
    "io" is `io_worker`); exit 1 with the reason if it stopped because it could not work."""
    import importlib
    import tempfile

    from common.worker.lifecycle import STOP_REASON_ENV

    fd, reason_file = tempfile.mkstemp(prefix=f"ttsq-{role}-", suffix=".stop")
    os.close(fd)
    os.environ[STOP_REASON_ENV] = reason_file
    package = {"synth": "gpu_worker", "io": "io_worker"}[role]
    app = importlib.import_module(f"{package}.tasks").app

    # A node name per process, so two workers on one host never share one in Flower.
    name = f"{role}-{os.getpid()}@%h"
    code: int | str | None = 0
    try:
        app.worker_main(["worker", "--loglevel", "INFO", "-E", "--hostname", name, *argv])
    except SystemExit as exc:
        code = exc.code
    finally:
        with open(reason_file) as f:
            reason = f.read().strip()
        os.unlink(reason_file)
    if reason:
        sys.exit(f"ttsq {role}: {reason}")
    return code if isinstance(code, int) else 1


def cmd_worker(_: argparse.Namespace) -> int:
    from gpu_worker.engines import resolve

    settings = _settings()
    _require_redis(settings, "worker")
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
        "--max-memory-per-child",
        str(NEVER_KB),
    ]
    if settings.max_jobs_per_child:
        argv += ["--max-tasks-per-child", str(settings.max_jobs_per_child)]
    return _celery_worker("synth", argv)


def cmd_io(_: argparse.Namespace) -> int:
    from common.storage import storage_problem

    settings = _settings()
    _require_redis(settings, "io")
    problem = storage_problem(settings)
    if problem is not None:
        sys.exit(f"ttsq io: storage is not usable: {problem}")
    queues = f"{keys.IO_QUEUE},{keys.WEBHOOK_QUEUE}"
    argv = ["-Q", queues, "--pool", "threads", "--concurrency", str(settings.io_concurrency)]
    return _celery_worker("io", argv)


def cmd_flower(_: argparse.Namespace) -> int:
    from common.broker import make_celery

    settings = _settings()
    app = make_celery(settings)
    if not is_loopback(settings.flower_host) and not os.environ.get("FLOWER_BASIC_AUTH"):
        sys.exit(
            f"ttsq flower: TTS_FLOWER_HOST={settings.flower_host} listens beyond loopback; "
            "set FLOWER_BASIC_AUTH=user:password first"
        )
    _require_redis(settings, "flower")
    address = f"--address={settings.flower_host}"
    app.start(["flower", f"--port={settings.flower_port}", address])
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    from ttsq.say import say

    return say(
        _settings(), text=args.text, out=args.output, voice=args.voice, url=args.url, key=args.key
    )


def cmd_status(args: argparse.Namespace) -> int:
    from ttsq.say import status

    return status(_settings(), job_id=args.job_id, url=args.url, key=args.key)


def cmd_batch(args: argparse.Namespace) -> int:
    from ttsq.batch import batch
    from ttsq.say import endpoint

    base, key = endpoint(_settings(), args.url, args.key)
    return batch(base, key, args.segments, args.out_dir)


def cmd_dub(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ttsq.dub import DubOptions, dub
    from ttsq.say import endpoint

    base, key = endpoint(_settings(), args.url, args.key)
    options = DubOptions(
        subtitles=Path(args.subtitles),
        out=Path(args.out),
        voice=args.voice,
        voices=Path(args.voices) if args.voices else None,
        rate=args.rate,
        lufs=args.lufs,
        json=args.json,
    )
    return dub(base, key, options)


def cmd_doctor(args: argparse.Namespace) -> int:
    from ttsq.doctor import doctor

    return doctor(_settings(), url=args.url)


def main(argv: list[str] | None = None) -> int:
    from ttsq.logs import configure

    configure()
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
    client_args = argparse.ArgumentParser(add_help=False)
    client_args.add_argument("--url", help="API base URL (default: TTS_SERVICE_URL, settings)")
    client_args.add_argument("--key", help="API key (default: TTS_API_KEY or the data dir's)")
    batch = sub.add_parser(
        "batch", parents=[client_args], help="synthesise a JSONL file of segments, resumably"
    )
    batch.add_argument("segments", help='one {"id": ..., "text": ...} per line')
    batch.add_argument("--out-dir", help="where <id>.wav go (default: beside the file)")
    batch.set_defaults(fn=cmd_batch)
    dub = sub.add_parser(
        "dub", parents=[client_args], help="speak a subtitle file into one fitted track, resumably"
    )
    dub.add_argument("subtitles", help="an SRT, WebVTT or ASS file")
    dub.add_argument("--out", required=True, help="the track: .wav, .flac or .mp3")
    dub.add_argument("--voice", help="the voice of every line the map does not name")
    dub.add_argument("--voices", help="a TOML map of styles, speakers, ranges to voices")
    dub.add_argument("--rate", type=int, help="sample rate (default: the engine's)")
    dub.add_argument("--lufs", type=float, default=-23.0, help="track loudness (default -23)")
    dub.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    dub.set_defaults(fn=cmd_dub)
    status = sub.add_parser("status", parents=[client_args], help="a job, or the newest jobs")
    status.add_argument("job_id", nargs="?")
    status.set_defaults(fn=cmd_status)
    doctor = sub.add_parser("doctor", help="check this deployment, one line per check")
    doctor.add_argument("--url", help="public URL to probe (default: TTS_PUBLIC_URL)")
    doctor.set_defaults(fn=cmd_doctor)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
