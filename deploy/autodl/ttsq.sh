#!/usr/bin/env bash
# Any `ttsq` command with this deployment's settings: `deploy/autodl/ttsq.sh doctor`,
# `ttsq.sh status`, `ttsq.sh say "你好" -o hello.wav`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$TTSQ_HOME"
exec "$TTSQ_VENV/bin/ttsq" "$@"
