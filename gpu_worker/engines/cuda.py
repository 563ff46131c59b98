"""What torch sees of the GPU, for `ttsq doctor`: the one place outside an engine that asks.

Never imports torch where it is not installed (the CPU engine's install has none).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    free_bytes: int
    total_bytes: int


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def visible_gpu() -> Gpu | None:
    """The first CUDA device and its free memory, or None where torch sees none."""
    if not torch_installed():
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return Gpu(torch.cuda.get_device_name(0), int(free), int(total))
