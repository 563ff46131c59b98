"""Run every benchmark, print its figures, and append them to bench/RESULTS.md with the
machine and the date. Not part of `make test`: benchmarks are timed, tests are not.

    .venv/bin/python -m bench.run_all [--quick]      # or: make bench

Each bench runs as its own process (each starts and stops a whole stack); one that fails is
recorded as failed and the others still run. `--quick` runs fewer jobs, for a smoke run.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
#: (module, its arguments, the arguments with --quick)
BENCHES: list[tuple[str, list[str], list[str]]] = [
    ("bench.gpu_busy", [], ["--jobs", "40"]),
    ("bench.overhead", [], ["--jobs", "20"]),
    # The same on local disk: ttsq's own overhead, without the S3 server's PUT (moto, ~6 ms).
    ("bench.overhead", ["--storage", "local"], ["--jobs", "20", "--storage", "local"]),
    ("bench.submit_wrk", [], ["--seconds", "5"]),
    ("bench.postprocess_offpath", [], ["--jobs", "10"]),
    ("bench.engine_vs_queue", [], ["--jobs", "8"]),
    ("bench.memory", [], ["--jobs", "2000", "--first", "200"]),
    ("bench.waiters", [], ["--window-s", "5"]),
]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("only", nargs="*", help="module names to run (default: all)")
    args = parser.parse_args()
    header = f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {machine()}\n"
    if args.quick:
        header += "\n(`--quick`: fewer jobs than the targets ask for)\n"
    with RESULTS.open("a") as out:
        out.write(header)
    print(header)
    failed = 0
    for module, argv, quick in BENCHES:
        if args.only and module not in args.only and module.split(".")[-1] not in args.only:
            continue
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", module, *(quick if args.quick else argv)],
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - started
        figures = proc.stdout.strip() or "(no output)"
        status = "" if proc.returncode == 0 else f" FAILED (exit {proc.returncode})"
        failed += proc.returncode != 0
        section = f"\n### {module}{status} ({took:.0f} s)\n\n```json\n{figures}\n```\n"
        if proc.returncode != 0:
            section += f"\n```\n{proc.stderr.strip()[-2000:]}\n```\n"
        print(section, flush=True)
        with RESULTS.open("a") as out:
            out.write(section)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
