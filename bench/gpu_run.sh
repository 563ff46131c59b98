#!/usr/bin/env bash
# One IndexTTS2 run on a GPU machine with no network, in under 8 minutes; one JSON out.
#
#   bench/gpu_run.sh --install            # once: a venv from wheels/ (bench/gpu-wheels.txt)
#   bench/gpu_run.sh [--out FILE]         # the run, on cuda:0
#   bench/gpu_run.sh --cpu [--out FILE]   # the same steps, small, on the CPU (CI runs it)
#
# Steps: random weights of the real shapes (tools/tiny_indextts.py --full; --cpu: small);
# upstream's infer() timed directly (RTF, GPT tokens/s, stage times) and ttsq's batches at
# 1, 2, 4, 8 (audio seconds per engine second), in fp16 and fp16 with use_accel where the
# installed upstream has it (bench/indextts_random.py); then the whole queue (API, Redis,
# worker, local storage) at TTS_ENGINE_BATCH=1 and at 8 (bench/engine_vs_queue.py; --cpu: at
# 2 only); peak GPU memory. The JSON holds each step's output under its name. WORK=DIR keeps
# the weights and the normaliser's cache there (a model dir already in DIR/model is used).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=gpu out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) mode=cpu ;;
        --install) mode=install ;;
        --out) out="$2"; shift ;;
        *) echo "usage: $0 [--cpu] [--install] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done

if [ "$mode" = install ]; then
    python3 -m venv --system-site-packages .venv-gpu  # the machine's own torch
    .venv-gpu/bin/pip install --no-index --find-links wheels -r bench/gpu-wheels.txt
    .venv-gpu/bin/pip install --no-index --find-links wheels --no-deps --ignore-requires-python \
        wheels/ee40fa7d6c6b8a2c7f06105f9f1e65775b74868c.zip
    .venv-gpu/bin/pip install --no-index --no-deps --no-build-isolation -e .
    exit 0
fi

if [ "$mode" = cpu ]; then
    PY=${PY:-.venv-indextts/bin/python}
    device=cpu lines=2 codes=40 batches=1,2 precisions=fp32 jobs=2 queues=2
    model=(--tiny)
else
    PY=${PY:-.venv-gpu/bin/python}
    device=cuda:0 lines=8 codes=300 batches=1,2,4,8 precisions=fp16,fp16-accel jobs=16 queues="1 8"
    model=()
fi
work=${WORK:-$(mktemp -d -t ttsq-gpu-run-XXXX)}
out=${out:-$work/gpu_run.json}
started=$(date +%s)

"$PY" bench/indextts_random.py "${model[@]}" --device "$device" --lines "$lines" \
    --codes "$codes" --batches "$batches" --precisions "$precisions" \
    --keep "$work" --data-dir "$work/data" --json "$work/engine.json" >/dev/null

fp16=true
[ "$mode" = cpu ] && fp16=false
for batch in $queues; do
    TTS_BACKEND=index_tts2 INDEXTTS_MODEL_DIR="$work/model" INDEXTTS_DEVICE="$device" \
    INDEXTTS_USE_FP16=$fp16 TTS_ENGINE_BATCH=$batch TTS_DATA_DIR="$work/data" \
    TTS_HEARTBEAT_TTL_S=120 TTS_ENGINE_START_TIMEOUT_S=600 \
        "$PY" -m bench.engine_vs_queue --jobs "$jobs" --storage local \
        --json "$work/queue-$batch.json" >/dev/null
done

"$PY" - "$work" "$out" "$started" <<'EOF'
import json, sys, time
from pathlib import Path
work, out, started = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
report = {"engine": json.loads((work / "engine.json").read_text())}
for queue in sorted(work.glob("queue-*.json")):
    report[f"queue_batch_{queue.stem[6:]}"] = json.loads(queue.read_text())
report["wall_s"] = round(time.time() - started)
out.write_text(json.dumps(report, indent=2) + "\n")
print(out)
EOF
