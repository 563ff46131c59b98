"""Replace the synthesis process when its GPU memory creeps above a mark.

Upstream's GPU memory grows over many jobs. When the engine finishes a job that leaves the
process above TTS_RECYCLE_GPU_MEMORY_MB, the process asks to be replaced (the task that sees it
is the next job's, `gpu_worker/pipeline.py`). It exits only after that job in hand has been
finished and handed on (`runtime.stop` drains the pipeline), through billiard's own recycling
path (the one `--max-memory-per-child` uses), so the parent starts a fresh process and nothing
is redelivered or lost.

billiard checks `max_memory_per_child` against `billiard.pool.mem_rss()` after each task. In
the child we wrap that function so that a pending request reads as "over the limit". The test
suite checks that the hook still exists in the pinned billiard.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: The limit given to billiard: large enough that only a request (or real RSS in the TiB) trips it.
NEVER_KB = 2**40

_requested = False


def install() -> None:
    """Wrap billiard's memory probe in this process (call it in the pool child)."""
    import billiard.pool as pool

    original = pool.mem_rss

    def mem_rss() -> int:
        return NEVER_KB * 2 if _requested else int(original())

    pool.mem_rss = mem_rss


def request(reason: str) -> None:
    global _requested
    if not _requested:
        log.warning("recycling the synthesis process after this job: %s", reason)
    _requested = True


def check_gpu_memory(used_mb: float, mark_mb: int) -> None:
    if mark_mb and used_mb > mark_mb:
        request(f"{used_mb:.0f} MiB of GPU memory reserved, above the mark of {mark_mb} MiB")
