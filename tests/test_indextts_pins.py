"""The real-engine venv runs on upstream IndexTTS2's own pins.

`tools/constraints-indextts.txt` is what `tools/indextts_lock.py` made of upstream's `uv.lock`
at the commit the `gpu` extra names; `make indextts-venv` installs under it. Here: the file
names that commit, each version that is not the lock's is marked with its reason, and every
package in `.venv-indextts` that the file names has the file's version.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from tools.indextts_lock import DEVIATIONS

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "tools" / "constraints-indextts.txt"
IVENV_PYTHON = REPO / ".venv-indextts" / "bin" / "python"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)$")


def pins() -> dict[str, str]:
    return {
        normal(m.group(1)): m.group(2)
        for line in CONSTRAINTS.read_text().splitlines()
        if (m := PIN.match(line))
    }


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_constraints_name_the_commit_the_gpu_extra_installs() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    commit = next(d for d in extra["optional-dependencies"]["gpu"] if "index-tts" in d)
    assert commit.rsplit("@", 1)[1] in CONSTRAINTS.read_text().splitlines()[1]


def test_every_deviation_from_the_lock_is_marked_with_its_reason() -> None:
    lines = CONSTRAINTS.read_text().splitlines()
    marked = {
        normal(PIN.match(lines[i + 1]).group(1))  # type: ignore[union-attr]
        for i, line in enumerate(lines)
        if line.startswith("# deviation: the lock has ")
    }
    assert marked == {normal(name) for name in DEVIATIONS}
    for name, (version, why) in DEVIATIONS.items():
        assert pins()[normal(name)] == version and why


def test_the_real_engine_venv_has_the_constrained_versions() -> None:
    assert IVENV_PYTHON.exists(), "the real-engine venv is missing: run `make indextts-venv`"
    out = subprocess.run(
        [str(IVENV_PYTHON), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {normal(p["name"]): p["version"].split("+")[0] for p in json.loads(out)}
    wanted = pins()
    wrong = {
        name: (installed[name], version)
        for name, version in wanted.items()
        if name in installed and installed[name] != version
    }
    assert wrong == {}, "installed, constrained"
    for core in ("numpy", "librosa", "transformers", "torchaudio", "safetensors"):
        assert installed[core] == wanted[core], core


def test_the_generator_takes_what_uv_sync_installs_here_and_nothing_else() -> None:
    """`resolved` on a small lock: the fork for CPython 3.11 on x86_64 Linux, a dependency's
    extra followed, and what only an extra of upstream's own (the web UI) or another platform
    needs left out."""
    from tools.indextts_lock import resolved

    pypi = {"registry": "https://pypi.org/simple"}
    old, new = "python_full_version < '3.11'", "python_full_version >= '3.11'"
    lock = {
        "package": [
            {
                "name": "indextts",
                "version": "2.0.0",
                "source": {"editable": "."},
                "dependencies": [
                    {"name": "numpy"},
                    {"name": "scipy", "version": "1.16.2", "source": pypi, "marker": new},
                    {"name": "scipy", "version": "1.15.3", "source": pypi, "marker": old},
                    {"name": "fugashi", "extra": ["unidic-lite"]},
                    {"name": "wetext", "marker": "sys_platform != 'linux'"},
                ],
                "optional-dependencies": {"webui": [{"name": "gradio"}]},
            },
            {"name": "numpy", "version": "2.2.6", "source": pypi},
            {"name": "scipy", "version": "1.15.3", "source": pypi, "resolution-markers": [old]},
            {"name": "scipy", "version": "1.16.2", "source": pypi, "resolution-markers": [new]},
            {
                "name": "fugashi",
                "version": "1.5.1",
                "source": pypi,
                "optional-dependencies": {"unidic-lite": [{"name": "unidic-lite"}]},
            },
            {"name": "unidic-lite", "version": "1.0.8", "source": pypi},
            {"name": "wetext", "version": "0.1.0", "source": pypi},
            {"name": "gradio", "version": "5.45.0", "source": pypi},
            {"name": "torch", "version": "2.8.0+cu128", "source": pypi},
        ]
    }
    assert resolved(lock) == {
        "numpy": "2.2.6",
        "scipy": "1.16.2",
        "fugashi": "1.5.1",
        "unidic-lite": "1.0.8",
    }
