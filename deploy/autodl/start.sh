#!/usr/bin/env bash
# Bring the ttsq stack up under supervisor: Redis, the API, both workers and Flower.
# Safe to run again: a stack that is already up is left as it is (pieces that are down are
# started). Run it after every restart of the instance (see README.md, "After a restart").
# Every path and port is an environment variable with the AutoDL default: see env.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

for exe in supervisord supervisorctl ttsq; do
    if [[ ! -x "$TTSQ_VENV/bin/$exe" ]]; then
        echo "start.sh: $TTSQ_VENV/bin/$exe is missing: run install.sh, or set TTSQ_VENV" >&2
        exit 1
    fi
done
if [[ "$TTSQ_RUN_REDIS" == true && ! -x "$TTSQ_REDIS_SERVER" ]]; then
    echo "start.sh: no redis-server (apt-get install redis-server, or set TTSQ_REDIS_SERVER)" >&2
    exit 1
fi
mkdir -p "$TTSQ_RUN_DIR" "$TTSQ_LOG_DIR" "$TTS_DATA_DIR/redis"

# Redis's settings: the repository's (append-only, noeviction) plus this machine's port, data
# dir and password. Written, not passed as arguments, so the password never shows in `ps`.
(
    umask 077
    cat >"$TTSQ_RUN_DIR/redis.conf" <<CONF
include $TTSQ_HOME/deploy/redis.conf
port $TTSQ_REDIS_PORT
dir $TTS_DATA_DIR/redis
requirepass ${TTSQ_REDIS_PASSWORD:-}
logfile ""
daemonize no
CONF
)

if [[ "$(ttsqctl pid 2>/dev/null || true)" =~ ^[0-9]+$ ]]; then
    echo "supervisord is already running; starting whatever is stopped"
    ttsqctl start all >/dev/null || true
else
    "$TTSQ_VENV/bin/supervisord" -c "$TTSQ_SUPERVISOR_CONF"
fi

case "$TTS_HOST" in
    127.0.0.1 | localhost | ::1) health_host="$TTS_HOST" ;;
    *) health_host=127.0.0.1 ;;
esac
health="http://$health_host:$TTS_PORT/health"
deadline=$((SECONDS + ${TTSQ_START_WAIT_S:-90}))
until "$TTSQ_VENV/bin/python" -c "import sys, httpx; sys.exit(httpx.get('$health', timeout=2).status_code != 200)" 2>/dev/null; do
    if ((SECONDS > deadline)); then
        echo "start.sh: the API did not answer $health; see $TTSQ_LOG_DIR/api.log" >&2
        ttsqctl status >&2 || true
        exit 1
    fi
    sleep 0.5
done

ttsqctl status || true
cat <<INFO
ttsq is up: $health
  public URL  ${TTS_PUBLIC_URL:-(TTS_PUBLIC_URL unset: audio URLs will name $health_host:$TTS_PORT)}
  API key     in $TTS_DATA_DIR/api_key unless TTS_API_KEY/TTS_API_KEYS is set
  Flower      http://127.0.0.1:$TTS_FLOWER_PORT (user and password: FLOWER_BASIC_AUTH, or admin and $TTS_DATA_DIR/flower_password)
  logs        $TTSQ_LOG_DIR
  The synthesis worker may take minutes to load its model: deploy/autodl/ttsq.sh doctor
INFO
