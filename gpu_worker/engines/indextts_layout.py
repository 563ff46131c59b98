"""Where an IndexTTS2 model dir keeps its auxiliary models, by upstream version.

Two layouts exist. Upstream from the `aux_paths` commit on reads flat paths under
`<model dir>/hf_cache/` (`w2v-bert-2.0/`, `semantic_codec_model.safetensors`, ...). Earlier
versions, `tts-webui-index-tts` 2.0.1 among them, call `from_pretrained`/`hf_hub_download` by
repo id, so they read the Hugging Face hub cache layout
(`hf_cache/models--facebook--w2v-bert-2.0/snapshots/<rev>/...`). Which one the installed version
reads is decided from its constructor's source, parsed without importing it (the worker's
parent must not import torch).

The Qwen emotion model (`qwen0.6bemo4-merge/`, for emotion from text) is required when building
the model loads it: always for versions without `use_qwen_emo`, else when the setting says so
or, unset, when the constructor's default does (True in upstream's `IndexTTS2`).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from collections.abc import Mapping
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
#: Where the Qwen emotion model is read from, under the model dir.
QWEN_DIR = "qwen0.6bemo4-merge"
#: The constructor's switch for it; versions without the switch always load it.
QWEN_SWITCH = "use_qwen_emo"
#: A constructor's parameters, each with its default (`inspect.Parameter.empty` where it has
#: none, or, read from source, where the default is not a literal).
Params = Mapping[str, object]


@dataclass(frozen=True)
class Layout:
    name: str  #: "flat" or "hub"
    missing: list[str]


def constructor_params(module_name: str) -> dict[str, object] | None:
    """The installed `IndexTTS2.__init__` parameters and their defaults, read from source;
    None when absent."""
    loaded = sys.modules.get(module_name)
    if loaded is not None and hasattr(loaded, "IndexTTS2"):  # already imported: just ask it
        return {n: p.default for n, p in inspect.signature(loaded.IndexTTS2).parameters.items()}
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
                    return _defaults(item.args)
    return None


def _defaults(args: ast.arguments) -> dict[str, object]:
    positional = [*args.posonlyargs, *args.args]
    # Positional defaults belong to the last parameters; `kw_defaults` holds None for none.
    padded: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = [
        *zip(positional, [*padded, *args.defaults], strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    return {arg.arg: _literal(default) for arg, default in pairs if arg.arg != "self"}


def _literal(node: ast.expr | None) -> object:
    if node is None:
        return inspect.Parameter.empty
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return inspect.Parameter.empty


def loads_qwen(params: Params | None, use_qwen_emo: bool | None) -> bool:
    """Whether building the model loads the Qwen emotion model: always where the constructor
    lacks `use_qwen_emo`; else the setting, where set; else the constructor's default (one
    that is not a literal counts as yes). With no upstream installed, only if the setting
    says so."""
    if params is not None and QWEN_SWITCH not in params:
        return True
    if use_qwen_emo is not None:
        return use_qwen_emo
    if params is None:
        return False
    default = params[QWEN_SWITCH]
    return default is inspect.Parameter.empty or bool(default)


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
    params: Params | None,
    use_qwen_emo: bool | None,
) -> Layout:
    """The layout the installed version reads (`params` from `constructor_params`), and what
    the model dir lacks of it, `QWEN_DIR` included where `loads_qwen` says so
    (`use_qwen_emo`: the setting). With no upstream installed, either complete layout passes."""
    base = [name for name in required if not (model_dir / name).exists()]
    if loads_qwen(params, use_qwen_emo) and not (model_dir / QWEN_DIR).is_dir():
        base.append(QWEN_DIR + "/")
    flat = Layout("flat", base + flat_missing(model_dir, aux))
    hubbed = Layout("hub", base + hub_missing(model_dir, hub))
    if params is not None:
        return flat if "aux_paths" in params else hubbed
    return min((flat, hubbed), key=lambda layout: len(layout.missing))
