"""deploy/systemd: the units hold what a rented host needs, and systemd accepts them."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from common import embedded_redis

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
PIECES = {"api": "api", "worker": "worker", "io": "io", "flower": "flower"}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text(), source=name)
    return parser


def test_every_piece_restarts_runs_hardened_as_its_own_user_and_after_redis() -> None:
    for name in ["ttsq-redis", *(f"ttsq-{p}" for p in PIECES)]:
        service = unit(f"{name}.service")["Service"]
        assert service["Restart"] == "always", name
        assert service["User"] == "ttsq" and service["Group"] == "ttsq", name
        assert service["NoNewPrivileges"] == "yes", name
        assert service["ProtectSystem"] == "strict" and service["ProtectHome"] == "yes", name
        assert service["CapabilityBoundingSet"] == "", name
        assert unit(f"{name}.service")["Install"]["WantedBy"] == "ttsq.target", name
    for name, command in PIECES.items():
        parsed = unit(f"ttsq-{name}.service")
        assert parsed["Service"]["ExecStart"].split()[-1] == command
        assert "ttsq-redis.service" in parsed["Unit"]["Requires"].split()
        assert "ttsq-redis.service" in parsed["Unit"]["After"].split()
        assert parsed["Unit"]["StartLimitIntervalSec"] == "0"  # never left failed for good
    worker = unit("ttsq-worker.service")["Service"]
    assert worker["KillMode"] == "mixed" and int(worker["TimeoutStopSec"]) >= 300
    assert "PrivateDevices" not in worker and "DeviceAllow" not in worker  # the GPU stays seen
    wants = unit("ttsq.target")["Unit"]["Wants"].split()
    assert sorted(wants) == sorted(f"ttsq-{p}.service" for p in ["redis", *PIECES])


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:  # a host without systemd: the INI checks above are what runs
        test_every_piece_restarts_runs_hardened_as_its_own_user_and_after_redis()
        return
    # verify wants each ExecStart binary to exist: point them at this machine's.
    ttsq = str(Path(sys.prefix) / "bin" / "ttsq")
    for path in UNITS.iterdir():
        text = path.read_text().replace("/opt/ttsq/venv/bin/ttsq", ttsq)
        text = text.replace("/usr/bin/redis-server", embedded_redis.server_binary())
        (tmp_path / path.name).write_text(text)
    files = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(
        [exe, "verify", "--man=no", *files], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ignoring" not in output and "Unknown" not in output, output
