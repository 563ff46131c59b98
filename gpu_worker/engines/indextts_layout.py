"""Where an IndexTTS2 model dir keeps its auxiliary models, by upstream version.

Two layouts exist. Upstream from the `aux_paths` commit on reads flat paths under
`<model dir>/hf_cache/` (`w2v-bert-2.0/`, `semantic_codec_model.safetensors`, ...). Earlier
versions, `tts-webui-index-tts` 2.0.1 among them, call `from_pretrained`/`hf_hub_download` by
repo id, so they read the Hugging Face hub cache layout
(`hf_cache/models--facebook--w2v-bert-2.0/snapshots/<rev>/...`). Which one the installed version
reads is decided from its constructor's source, parsed without importing it (the worker's
parent must not import torch).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

#: The flat layout: upstream's `aux_paths` key -> path under the model dir.
FLAT = {
    "w2v_bert": "hf_cache/w2v-bert-2.0",
    "semantic_codec": "hf_cache/semantic_codec_model.safetensors",
    "campplus": "hf_cache/campplus_cn_common.bin",
    "bigvgan": "hf_cache/bigvgan",
}
#: The hub layout: repo id -> the files read from its snapshot.
HUB = {
    "facebook/w2v-bert-2.0": ("config.json", "model.safetensors", "preprocessor_config.json"),
    "amphion/MaskGCT": ("semantic_codec/model.safetensors",),
    "funasr/campplus": ("campplus_cn_common.bin",),
    "nvidia/bigvgan_v2_22khz_80band_256x": ("config.json", "bigvgan_generator.pt"),
}
#: Versions without `use_qwen_emo` always build the Qwen emotion model from here.
QWEN_DIR = "qwen0.6bemo4-merge"


@dataclass(frozen=True)
class Layout:
    name: str  #: "flat" or "hub"
    missing: list[str]


def constructor_params(module_name: str) -> set[str] | None:
    """The installed `IndexTTS2.__init__` parameters, read from source; None when absent."""
    loaded = sys.modules.get(module_name)
    if loaded is not None and hasattr(loaded, "IndexTTS2"):  # already imported: just ask it
        return set(inspect.signature(loaded.IndexTTS2).parameters)
    try:
        spec = importlib.util.find_spec(module_name)
    except (ModuleNotFoundError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "IndexTTS2":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args
                    return {a.arg for a in [*args.args, *args.kwonlyargs]} - {"self"}
    return None


def flat_missing(model_dir: Path, aux: dict[str, str]) -> list[str]:
    return [path for path in aux.values() if not (model_dir / path).exists()]


def hub_missing(model_dir: Path, repos: dict[str, tuple[str, ...]]) -> list[str]:
    """What the hub cache lacks, read as `huggingface_hub` reads it offline: the revision
    in `refs/main`, then the files in that snapshot."""
    missing = []
    for repo, files in repos.items():
        root = model_dir / "hf_cache" / ("models--" + repo.replace("/", "--"))
        ref = root / "refs" / "main"
        where = f"hf_cache/{root.name}"
        if not ref.is_file():
            missing.append(f"{where}/refs/main ({repo})")
            continue
        snapshot = root / "snapshots" / ref.read_text().strip()
        missing += [
            f"{where}/snapshots/{snapshot.name}/{f} ({repo})"
            for f in files
            if not (snapshot / f).exists()
        ]
    return missing


def check(
    model_dir: Path,
    required: tuple[str, ...],
    aux: dict[str, str],
    hub: dict[str, tuple[str, ...]],
    params: set[str] | None,
) -> Layout:
    """The layout the installed version reads (`params` from `constructor_params`), and what
    the model dir lacks of it. With no upstream installed, either complete layout passes."""
    base = [name for name in required if not (model_dir / name).exists()]
    if params is not None and "use_qwen_emo" not in params and not (model_dir / QWEN_DIR).is_dir():
        base.append(QWEN_DIR + "/")
    flat = Layout("flat", base + flat_missing(model_dir, aux))
    hubbed = Layout("hub", base + hub_missing(model_dir, hub))
    if params is not None:
        return flat if "aux_paths" in params else hubbed
    return min((flat, hubbed), key=lambda layout: len(layout.missing))
