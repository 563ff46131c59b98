"""`bench.overhead` for two checkouts at once, one job each in turn: a change's effect on the
per-job overhead, measured where the machine's own drift cannot pass for it.

    git worktree add /tmp/before <commit> && ln -s "$PWD/.venv" /tmp/before/.venv
    .venv/bin/python -m bench.overhead_ab /tmp/before [--jobs 100] [--engine-s 0.3]

On a small shared VM the same code measured 1.036 to 1.066 (end-to-end / engine) in runs a
minute apart, more than most changes move it. Here both stacks (each a real stack on local
disk, as `bench.overhead --storage local`, started from its own checkout) run side by side,
idle but for the one job in flight, and take their jobs alternately (ABBA), so a slow minute
slows both alike. Prints JSON: per checkout, the median ratio and overhead and each stage's
median (as `bench.overhead` names them), and the median of the paired differences in overhead
(this checkout's job less the other's job of the same turn).

Each stack is driven by this file run again as `--side` in its checkout (its own `bench.stack`
and code, whatever the commit); the stages are computed here, the same way for both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def side(engine_s: float) -> None:
    """One stack from the checkout this runs in; a job per line read, its raw marks printed."""
    sys.path.insert(0, os.getcwd())
    import httpx
    import redis as redis_client

    from bench.stack import bench_stack  # the checkout's own
    from common import keys

    with (
        bench_stack(storage="local") as stack,
        httpx.Client(
            base_url=stack.url, headers={**stack.headers(), "Prefer": "wait=60"}, timeout=90
        ) as http,
    ):
        records = redis_client.Redis.from_url(stack.redis.url)
        print("ready", flush=True)
        for i, _ in enumerate(sys.stdin):
            body = {"text": f"Line {i}.", "metadata": {"script": f"sleep:{engine_s}"}}
            sent, started = time.time(), time.perf_counter()
            answer = http.post("/v1/jobs", json=body)
            latency = time.perf_counter() - started
            answered = time.time()
            done = answer.json()
            if answer.status_code != 200 or done["status"] != "succeeded":
                raise SystemExit(f"job did not succeed in the wait: {answer.status_code} {done}")
            record = json.loads(records.get(keys.job(done["id"])) or b"{}")
            spans = (stack.ledger / "engine-spans").read_text().splitlines()
            row = {
                "sent": sent,
                "answered": answered,
                "latency": latency,
                "synth_s": float(done["metrics"]["synth_s"]),
                "record": record,
                "engine": [float(x) for x in spans[-1].split()],
            }
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("other", type=Path, help="the other checkout (a git worktree)")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--engine-s", type=float, default=0.3)
    parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.engine_s)
        return
    from bench.overhead import stages

    trees = [HERE, args.other.resolve()]
    command = [sys.executable, str(Path(__file__).resolve()), ".", "--side"]
    command += ["--engine-s", str(args.engine_s)]
    sides = [
        subprocess.Popen(
            command, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for tree in trees
    ]
    rows: list[list[dict[str, Any]]] = [[], []]
    try:
        for side_proc in sides:
            assert side_proc.stdout is not None
            if side_proc.stdout.readline().strip() != "ready":
                raise SystemExit("a stack did not start")
        for turn in range(args.jobs + 2):
            for k in (0, 1) if turn % 2 == 0 else (1, 0):
                proc = sides[k]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    raise SystemExit(f"the stack of {trees[k]} stopped")
                if turn >= 2:  # warm-up
                    rows[k].append(json.loads(line))
    finally:
        for proc in sides:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in sides:
            proc.wait(120)

    def overhead_ms(row: dict[str, Any]) -> float:
        return (row["latency"] - row["synth_s"]) * 1000

    report: dict[str, Any] = {"jobs": args.jobs, "engine_s": args.engine_s}
    for tree, got in zip(("this", "other"), rows, strict=True):
        spent = [stages(r["sent"], r["answered"], r["record"], r["engine"]) for r in got]
        report[tree] = {
            "checkout": str(trees[0] if tree == "this" else trees[1]),
            "ratio_median": round(statistics.median(r["latency"] / r["synth_s"] for r in got), 4),
            "overhead_ms_median": round(statistics.median(overhead_ms(r) for r in got), 2),
            "stage_ms_median": {
                name: round(statistics.median(s[name] for s in spent) * 1000, 2)
                for name in spent[0]
                if name != "engine"
            },
        }
    paired = [overhead_ms(a) - overhead_ms(b) for a, b in zip(*rows, strict=True)]
    report["overhead_ms_this_less_other_median"] = round(statistics.median(paired), 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
