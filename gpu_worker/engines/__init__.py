"""Engine lookup: `TTS_BACKEND` names a built-in engine or a `package.module:Class`.

An engine class is built as `cls(settings)`, in the process that runs the jobs. Built-ins are
imported lazily, so that picking `espeak` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import cast

from common.errors import EngineLoadError
from common.settings import Settings
from gpu_worker.engines.base import Engine

BUILTIN = {
    "espeak": "gpu_worker.engines.espeak:EspeakEngine",
    "index_tts2": "gpu_worker.engines.indextts:IndexTTS2Engine",
    "index_tts2_5": "gpu_worker.engines.indextts:IndexTTS25Engine",
}


def resolve(backend: str) -> type:
    target = BUILTIN.get(backend, backend)
    module_name, sep, attr = target.partition(":")
    if not sep:
        raise EngineLoadError(
            f"TTS_BACKEND={backend!r} is neither a built-in engine ({', '.join(BUILTIN)}) "
            "nor a package.module:Class"
        )
    try:
        module = importlib.import_module(module_name)
        return cast(type, getattr(module, attr))
    except (ImportError, AttributeError) as exc:
        raise EngineLoadError(f"cannot load engine {target!r}: {exc}") from exc


def load_engine(settings: Settings) -> Engine:
    return cast(Engine, resolve(settings.backend)(settings))
