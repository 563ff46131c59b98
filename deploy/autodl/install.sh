#!/usr/bin/env bash
# Install ttsq on a fresh AutoDL instance (image: PyTorch 2.x / CUDA 12.x, Python 3.11 or a
# conda python3.11). Run from the repository's clone, ideally on the data disk:
#   cd /root/autodl-tmp && git clone <ttsq repo> ttsq && bash ttsq/deploy/autodl/install.sh
# It is safe to run again: each step skips what is already there.
#
#   1. a venv on the data disk ($TTSQ_VENV), with ttsq[gpu] (upstream IndexTTS2 at the pinned
#      commit, its torch pins) and supervisor;
#   2. the IndexTTS-2 weights into $INDEXTTS_MODEL_DIR, through HF_ENDPOINT (the mirror by
#      default) or ModelScope (TTSQ_WEIGHTS_FROM=modelscope);
#   3. the auxiliary models into $INDEXTTS_MODEL_DIR/hf_cache, so the worker starts offline;
#   4. `ttsq doctor`'s weights check (the worker's own preflight).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PYTHON="${TTSQ_PYTHON:-$(command -v python3.11 || command -v python3)}"
export HF_ENDPOINT="${HF_ENDPOINT:-https://hf-mirror.com}"
WEIGHTS_FROM="${TTSQ_WEIGHTS_FROM:-hf}"  # hf | modelscope
HF_CACHE="$INDEXTTS_MODEL_DIR/hf_cache"

step() { printf '\n== %s\n' "$*"; }

step "venv at $TTSQ_VENV (python: $PYTHON)"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "install.sh: ttsq[gpu] needs Python 3.11; set TTSQ_PYTHON" >&2; exit 1; }
[[ -x "$TTSQ_VENV/bin/python" ]] || "$PYTHON" -m venv "$TTSQ_VENV"
"$TTSQ_VENV/bin/pip" install --upgrade pip
# AutoDL's pip mirror is set in /etc/pip.conf on its images; nothing to add here.
"$TTSQ_VENV/bin/pip" install -e "$TTSQ_HOME[gpu]" supervisor==4.3.0 "huggingface_hub[cli]" modelscope
"$TTSQ_VENV/bin/python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

step "IndexTTS-2 weights into $INDEXTTS_MODEL_DIR (from $WEIGHTS_FROM)"
mkdir -p "$INDEXTTS_MODEL_DIR" "$HF_CACHE"
if [[ -f "$INDEXTTS_MODEL_DIR/gpt.pth" && -f "$INDEXTTS_MODEL_DIR/config.yaml" ]]; then
    echo "already there"
elif [[ "$WEIGHTS_FROM" == modelscope ]]; then
    "$TTSQ_VENV/bin/modelscope" download --model IndexTeam/IndexTTS-2 --local_dir "$INDEXTTS_MODEL_DIR"
else
    "$TTSQ_VENV/bin/hf" download IndexTeam/IndexTTS-2 --local-dir "$INDEXTTS_MODEL_DIR"
fi

step "auxiliary models into $HF_CACHE (the worker never downloads at start)"
# Where upstream's own first run puts them, in the flat layout the engine passes as aux_paths
# (README, "IndexTTS2"). Each download is skipped once its file is there.
hf_get() {  # hf_get REPO FILE-OR-"" DEST
    if [[ -n "$2" ]]; then
        [[ -f "$3/$2" ]] || "$TTSQ_VENV/bin/hf" download "$1" "$2" --local-dir "$3"
    else
        [[ -f "$3/config.json" ]] || "$TTSQ_VENV/bin/hf" download "$1" --local-dir "$3"
    fi
}
hf_get facebook/w2v-bert-2.0 "" "$HF_CACHE/w2v-bert-2.0"
hf_get amphion/MaskGCT semantic_codec/model.safetensors "$HF_CACHE/maskgct"
[[ -f "$HF_CACHE/semantic_codec_model.safetensors" ]] \
    || cp "$HF_CACHE/maskgct/semantic_codec/model.safetensors" "$HF_CACHE/semantic_codec_model.safetensors"
hf_get funasr/campplus campplus_cn_common.bin "$HF_CACHE"
hf_get nvidia/bigvgan_v2_22khz_80band_256x "" "$HF_CACHE/bigvgan"

step "preflight: are the weights complete, in the layout the installed IndexTTS2 reads?"
"$TTSQ_VENV/bin/python" - <<'PY'
import sys
from common.errors import EngineLoadError
from common.settings import Settings
from gpu_worker.engines import resolve

settings = Settings()
try:
    preflight = getattr(resolve(settings.backend), "preflight", None)
    if preflight is not None:
        preflight(settings)
except EngineLoadError as exc:
    sys.exit(f"install.sh: {exc.message}")
print(f"{settings.backend}: {settings.indextts_model_dir} is complete")
PY

cat <<DONE

Installed. Next:
  - settings in $TTSQ_ENV_FILE (KEY=value lines; at least TTS_PUBLIC_URL, see README.md)
  - bash $TTSQ_HOME/deploy/autodl/start.sh
  - bash $TTSQ_HOME/deploy/autodl/ttsq.sh doctor
DONE
