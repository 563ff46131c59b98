"""`/metrics`: one job's whole life through a real stack, the dashboard's metric names, and
the JSON log format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import RedisServer
from tests.support.stack import DB, KEYS, Stack

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "ttsq.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # Prometheus sends the key as a bearer token.
    r = httpx.get(
        f"{stack.url}/metrics", headers={"Authorization": f"Bearer {KEYS['alice']}"}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def exposed_names(stack: Stack) -> set[str]:
    r = httpx.get(f"{stack.url}/metrics", headers=stack.headers(), timeout=10)
    return {
        family.name + suffix
        for family in text_string_to_metric_families(r.text)
        for suffix in SUFFIXES[family.type]
    }


def test_metrics_need_the_api_key(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/metrics", timeout=10).status_code == 401
    bad = {"Authorization": "Bearer not-a-key"}
    assert httpx.get(f"{stack.url}/metrics", headers=bad, timeout=10).status_code == 401


def test_metrics_show_one_jobs_whole_life(stack: Stack) -> None:
    before = scrape(stack)
    job = stack.submit(text="Metrics for one job.", metadata={"script": "sleep:0.2"})
    done = stack.wait_end(job["id"])
    assert done["status"] == "succeeded"
    after = scrape(stack)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for stage in ("queue_wait", "synthesis", "upload", "end_to_end"):
        assert delta(f"ttsq_{stage}_seconds_count") == 1, stage
        assert delta(f"ttsq_{stage}_seconds_bucket", le="+Inf") == 1, stage
    assert abs(delta("ttsq_queue_wait_seconds_sum") - done["metrics"]["queue_s"]) < 1e-3
    assert abs(delta("ttsq_synthesis_seconds_sum") - done["metrics"]["synth_s"]) < 1e-3
    assert delta("ttsq_synthesis_seconds_bucket", le="0.1") == 0  # the engine slept 0.2 s
    assert delta("ttsq_synthesis_seconds_bucket", le="0.5") == 1
    assert abs(delta("ttsq_gpu_busy_seconds_total") - done["metrics"]["synth_s"]) < 1e-3
    assert delta("ttsq_real_time_factor_count") == 1
    assert delta("ttsq_jobs_ended_total", status="succeeded", code="") == 1
    assert abs(delta("ttsq_audio_seconds_total") - done["audio"]["duration_s"]) < 1e-3
    assert delta("ttsq_jobs_ended_total", status="failed", code="") == 0
    ready = {labels: v for (name, labels), v in after.items() if name == "ttsq_worker_ready"}
    kinds = {dict(labels)["kind"]: v for labels, v in ready.items()}
    assert kinds == {"synth": 1.0, "io": 1.0}
    assert ("ttsq_queue_depth", (("priority", "0"), ("queue", "ttsq.synth"))) in after


def test_failed_jobs_are_counted_by_error_code(stack: Stack) -> None:
    before = scrape(stack)
    job = stack.submit(text="Refused.", metadata={"script": "reject"})
    done = stack.wait_end(job["id"])
    after = scrape(stack)
    code = done["error"]["code"]
    key = ("ttsq_jobs_ended_total", (("code", code), ("status", "failed")))
    assert after[key] - before.get(key, 0.0) == 1
    # A job that never made audio adds nothing to the synthesis figures.
    synth = ("ttsq_synthesis_seconds_count", ())
    assert after[synth] == before[synth]


def test_the_dashboard_uses_every_metric_and_only_those_metrics_expose(stack: Stack) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bttsq_[a-z_]+", expr)}
    exposed = exposed_names(stack)
    assert used - exposed == set()
    families = {
        name.removesuffix("_bucket") for name in exposed if not name.endswith(("_sum", "_count"))
    }
    unused = {f for f in families if not any(u.startswith(f.removesuffix("_total")) for u in used)}
    assert unused == set()


def run_logging(redis_server: RedisServer, log_format: str | None) -> tuple[str, list[str]]:
    script = (
        "import redis, sys\n"
        "from ttsq.logs import configure\n"
        "from common.jobs.store import JobStore\n"
        "from common.schemas.jobs import JobRequest\n"
        "configure()\n"
        "store = JobStore(redis.Redis.from_url(sys.argv[1]), job_ttl_s=60)\n"
        "job = store.create('alice', JobRequest(text='hello'))\n"
        "store.fail(job.id, 'scripted', 'a scripted failure', retryable=False)\n"
        "print(job.id)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TTS_LOG_FORMAT"}
    if log_format:
        env["TTS_LOG_FORMAT"] = log_format
    url = redis_server.url.removesuffix("/0") + f"/{DB['metrics']}"
    out = subprocess.run(
        [sys.executable, "-c", script, url],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip(), out.stderr.strip().splitlines()


def test_json_logs_are_one_object_a_line_with_the_job_id(redis_server: RedisServer) -> None:
    job_id, lines = run_logging(redis_server, "json")
    records = [json.loads(line) for line in lines]
    mine = [r for r in records if r.get("job_id") == job_id]
    assert [r["message"] for r in mine] == [
        f"[job {job_id}] queued",
        f"[job {job_id}] queued -> failed (scripted)",
    ]
    assert {r["level"] for r in mine} == {"INFO"} and all("time" in r for r in mine)


def test_text_logs_keep_the_job_prefix(redis_server: RedisServer) -> None:
    job_id, lines = run_logging(redis_server, None)
    assert any(line.endswith(f"[job {job_id}] queued -> failed (scripted)") for line in lines)
    assert not any(line.startswith("{") for line in lines)
