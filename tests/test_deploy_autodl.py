"""deploy/autodl: start.sh brings the stack up under supervisor on this machine, with every
path and port moved to a temp dir and free ports; pieces come back after SIGKILL; a job that
a shutdown interrupted finishes after the next start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.engines import calls
from tests.support.servers import REPO, free_port, wait_for
from tests.support.stack import wav_ok
from ttsq.client import Client

pytestmark = pytest.mark.integration

AUTODL = REPO / "deploy" / "autodl"
VENV = Path(sys.prefix)  # the venv running the tests holds ttsq and supervisor


class AutoDL:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger = root / "ledger"
        self.ledger.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "INDEXTTS_"))}
        env.update(
            TTSQ_ROOT=str(root),
            TTSQ_VENV=str(VENV),
            TTS_HOST="127.0.0.1",
            TTS_PORT=str(free_port()),
            TTS_FLOWER_PORT=str(free_port()),
            TTSQ_REDIS_PORT=str(free_port()),
            # eSpeak NG, with the test engine's scripted sleeps (hence the repo on the path).
            TTS_BACKEND="tests.support.engines:ScriptedEngine",
            TTS_TEST_LEDGER_DIR=str(self.ledger),
            PYTHONPATH=str(REPO),
            TTSQ_WORKER_STOP_WAIT_S="2",
            TTS_HEARTBEAT_INTERVAL_S="0.5",
            TTS_HEARTBEAT_TTL_S="2",
            TTS_SWEEP_INTERVAL_S="0.5",
            TTS_STUCK_GRACE_S="2",
            TTS_VISIBILITY_TIMEOUT_S="5",
        )
        self.env = env
        self.url = f"http://127.0.0.1:{env['TTS_PORT']}"

    def script(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(AUTODL / name), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            ["bash", "-c", f'source {AUTODL}/env.sh && ttsqctl "$@"', "ctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout.strip()

    def pid(self, piece: str) -> int:
        out = self.ctl("pid", piece)
        return int(out) if out.isdigit() else 0

    @property
    def key(self) -> str:
        return (self.root / "ttsq-data" / "api_key").read_text().strip()

    def client(self) -> Client:
        return Client(self.url, self.key, timeout=10)

    def wait_ready(self) -> None:
        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/ready", headers={"X-Api-Key": self.key}).is_success
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the supervised stack to be ready", every=0.3)

    def logs(self) -> str:
        logs = self.root / "ttsq-data" / "logs"
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs.glob("*.log"))


@pytest.fixture(scope="module")
def autodl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AutoDL]:
    stack = AutoDL(tmp_path_factory.mktemp("autodl"))
    started = stack.script("start.sh")
    assert started.returncode == 0, started.stderr + stack.logs()
    yield stack
    stopped = stack.script("stop.sh")
    pidfile = stack.root / "ttsq-data" / "run" / "supervisord.pid"
    if stopped.returncode != 0 and pidfile.exists():
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_start_sh_brings_up_a_stack_that_speaks_and_passes_the_doctor(autodl: AutoDL) -> None:
    assert httpx.get(f"{autodl.url}/health").status_code == 200
    assert httpx.get(f"{autodl.url}/v1/jobs").status_code == 401  # a key was made: never open
    autodl.wait_ready()
    with autodl.client() as tts:
        job = tts.wait(tts.submit("Hello from supervisor."), timeout=60)
        assert wav_ok(tts.download(job)) > 0.3
    doctor = autodl.script("ttsq.sh", "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert re.search(r"^ok +redis .*appendonly yes, noeviction", doctor.stdout, re.M)
    assert re.search(r"^ok +workers +1 synthesis worker", doctor.stdout, re.M)
    # Redis wants the password start.sh made; Flower wants its basic auth.
    port = int(autodl.env["TTSQ_REDIS_PORT"])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    flower = f"http://127.0.0.1:{autodl.env['TTS_FLOWER_PORT']}/"
    wait_for(lambda: _answers(flower), 30, "Flower")
    assert httpx.get(flower).status_code == 401
    password = (autodl.root / "ttsq-data" / "flower_password").read_text().strip()
    assert httpx.get(flower, auth=("admin", password)).status_code == 200
    again = autodl.script("start.sh")  # idempotent: the stack keeps running
    assert again.returncode == 0 and "already running" in again.stdout


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("piece", ["redis", "api", "worker", "io"])
def test_a_piece_killed_with_sigkill_comes_back_by_itself(autodl: AutoDL, piece: str) -> None:
    before = autodl.pid(piece)
    assert before, autodl.logs()
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: autodl.pid(piece) not in (0, before), 30, f"{piece} to be restarted")
    autodl.wait_ready()
    with autodl.client() as tts:
        job = tts.wait(tts.submit(f"After {piece} came back."), timeout=60)
    assert job.status.value == "succeeded", autodl.logs()


def test_after_a_shutdown_and_a_fresh_start_the_interrupted_jobs_finish(autodl: AutoDL) -> None:
    autodl.wait_ready()
    with autodl.client() as tts:
        # A job the shutdown catches mid-synthesis (longer than TTSQ_WORKER_STOP_WAIT_S, so
        # supervisor kills the worker in the end), and one still queued behind it.
        slow = tts.submit("Interrupted.", metadata={"probe": "slow", "script": "sleep_once:10"})
        wait_for(lambda: calls(autodl.ledger, "slow") == 1, 30, "the slow job to start")
        queued = tts.submit("Waiting behind it.")
    stopped = autodl.script("stop.sh")
    assert stopped.returncode == 0, stopped.stderr
    for port in ("TTS_PORT", "TTSQ_REDIS_PORT"):
        assert not _answers_tcp(int(autodl.env[port])), f"{port} still open after stop.sh"

    started = autodl.script("start.sh")
    assert started.returncode == 0, started.stderr + autodl.logs()
    with autodl.client() as tts:
        done = [tts.wait(job, timeout=90) for job in (slow, queued)]
    assert [j.status.value for j in done] == ["succeeded", "succeeded"], autodl.logs()
    assert done[0].attempts == 2 and calls(autodl.ledger, "slow") == 2


def _answers_tcp(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
