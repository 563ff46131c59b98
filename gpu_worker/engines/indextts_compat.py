"""What importing and building upstream IndexTTS2 does to the process, undone or redirected.

Found by running the real `tts-webui-index-tts` 2.0.1 (tests/test_real_indextts.py):
- `indextts.infer_v2` sets `HF_HUB_CACHE=./checkpoints/hf_cache` at import, so the hub cache
  depends on the working directory. `huggingface_hub.constants` reads the variable once, at its
  own import: importing it after setting ours, before upstream, pins the model dir's cache.
- it installs `ignore` filters for every UserWarning and FutureWarning, process-wide.
- its text normaliser builds its Chinese rules into a cache inside its own install directory,
  which a read-only install (or a second venv user) cannot write.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def pin_hub_cache(cache: Path) -> None:
    """Offline, and the hub cache at `cache`, whatever upstream's import sets later."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = str(cache)
    try:
        import huggingface_hub.constants as hub
    except ImportError:  # the test suite's fake upstream has no hub client
        return
    # Already imported earlier in this process? Then the variables came too late: set both.
    hub.HF_HUB_CACHE = str(cache)
    hub.HF_HUB_OFFLINE = True


@contextlib.contextmanager
def tagger_cache(cache: Path) -> Iterator[None]:
    """Upstream's Chinese text normaliser builds its rules into `cache`, not its package dir."""
    try:
        import tn.chinese.normalizer as zh
    except ImportError:  # versions that normalise with `wetext` write no cache
        yield
        return
    original = zh.Normalizer

    @functools.wraps(original)
    def redirected(*args: Any, **kwargs: Any) -> Any:
        cache.mkdir(parents=True, exist_ok=True)
        if not (cache / "zh_tn_tagger.fst").exists():
            log.info("building the text normaliser's rules into %s (about a minute, once)", cache)
        kwargs["cache_dir"] = str(cache)
        return original(*args, **kwargs)

    zh.Normalizer = redirected
    try:
        yield
    finally:
        zh.Normalizer = original
