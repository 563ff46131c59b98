#!/usr/bin/env bash
# Stop the whole stack: Flower, then the workers (each finishes the job in hand, up to
# TTSQ_WORKER_STOP_WAIT_S), then the API, then Redis (which writes its append-only file).
# Queued jobs stay in Redis and run after the next start.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

pid="$(ttsqctl pid 2>/dev/null || true)"
if [[ ! "$pid" =~ ^[0-9]+$ ]]; then
    echo "stop.sh: supervisord is not running"
    exit 0
fi
ttsqctl shutdown >/dev/null
deadline=$((SECONDS + TTSQ_WORKER_STOP_WAIT_S + 180))
while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS > deadline)); then
        echo "stop.sh: supervisord ($pid) is still stopping; see $TTSQ_LOG_DIR" >&2
        exit 1
    fi
    sleep 0.2
done
echo "ttsq stopped"
