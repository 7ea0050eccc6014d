#!/usr/bin/env bash
# The compose stack on bare metal: nginx on :9999 -> api1 + api2 over unix sockets, the
# peer link between them, and processor emulators on :8001/:8002 when nothing listens
# there. Foreground; Ctrl-C (or any process dying) stops everything it started, by PID.
#
# Environment (all optional):
#   PORT=9999                  nginx port
#   RUN_DIR=/tmp/rinha-local   sockets, generated nginx.conf, pid list, nginx temp dirs
#   RINHA_BIN, PROCESSOR_BIN   binaries [target/release/{rinha,processor}]
#   START_PROCESSORS=auto      auto: start an emulator on 8001/8002 if the port is free; 0: never
#   PP_DEFAULT_PORT=8001, PP_FALLBACK_PORT=8002   where the processors are (or get started)
#   RUN_SECONDS=               stop by itself after this many seconds
#   RINHA_*                    passed through to both instances (e.g. RINHA_WORKERS=64)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-9999}
RUN_DIR=${RUN_DIR:-/tmp/rinha-local}
RINHA_BIN=${RINHA_BIN:-$ROOT/target/release/rinha}
PROCESSOR_BIN=${PROCESSOR_BIN:-$ROOT/target/release/processor}
START_PROCESSORS=${START_PROCESSORS:-auto}
PP_DEFAULT_PORT=${PP_DEFAULT_PORT:-8001}
PP_FALLBACK_PORT=${PP_FALLBACK_PORT:-8002}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

PIDS=()   # every process this script started, stopped in reverse order
NAMES=()

log() { printf '[run-local] %s\n' "$*" >&2; }

stop_all() {
    trap - INT TERM EXIT
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for _ in $(seq 30); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$RUN_DIR"/*.sock "$RUN_DIR/pids"
    log "stopped"
}

# start NAME CMD...: runs CMD in the background, its output prefixed with [NAME].
start() {
    local name=$1
    shift
    "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
    echo "$name $!" >>"$RUN_DIR/pids"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for WHAT TEST...: up to 10 s
    for _ in $(seq 100); do
        "${@:2}" && return 0
        sleep 0.1
    done
    log "timed out waiting for $1"
    return 1
}

for bin in "$RINHA_BIN" "$PROCESSOR_BIN"; do
    [[ -x $bin ]] || { log "missing $bin: run 'make build' first"; exit 1; }
done
[[ -x $NGINX ]] || { log "nginx not found: run bench/setup.sh or apt-get install nginx-light"; exit 1; }
if port_busy "$PORT"; then log "port $PORT is already in use"; exit 1; fi

mkdir -p "$RUN_DIR"
chmod 755 "$RUN_DIR"
rm -f "$RUN_DIR"/*.sock "$RUN_DIR/pids"
trap 'exit 130' INT TERM
trap stop_all EXIT

# Processor emulators (preview fees 5 % / 15 %), only where nothing listens already.
if [[ $START_PROCESSORS != 0 ]]; then
    for spec in "default:$PP_DEFAULT_PORT:0.05" "fallback:$PP_FALLBACK_PORT:0.15"; do
        IFS=: read -r name port fee <<<"$spec"
        if port_busy "$port"; then
            log "$name processor: something already listens on :$port, using it"
        else
            start "pp-$name" "$PROCESSOR_BIN" --port "$port" --fee "$fee" --token 123 \
                --rate-limit-seconds 5
        fi
    done
fi

# The two instances: docker-compose.yml's environment with the sockets moved to RUN_DIR.
# A new stack starts with new state: crash journals of an earlier run are removed.
rm -f "$RUN_DIR"/journal-api*
for id in 1 2; do
    other=$((3 - id))
    start "api$id" env \
        RINHA_INSTANCE_ID="$id" \
        RINHA_UNIX="$RUN_DIR/api$id.sock" \
        RINHA_PEER_LISTEN="unix:$RUN_DIR/peer$id.sock" \
        RINHA_PEERS="unix:$RUN_DIR/peer$other.sock" \
        RINHA_PEER_TOKEN="${RINHA_PEER_TOKEN:-local-peer-token}" \
        RINHA_JOURNAL="$RUN_DIR/journal-api$id.bin" \
        RINHA_DEFAULT_URL="${RINHA_DEFAULT_URL:-http://127.0.0.1:$PP_DEFAULT_PORT}" \
        RINHA_FALLBACK_URL="${RINHA_FALLBACK_URL:-http://127.0.0.1:$PP_FALLBACK_PORT}" \
        "$RINHA_BIN"
done

# nginx with nginx.conf's socket paths and port rewritten; temp dirs inside RUN_DIR so
# that it also runs as a normal user.
# worker_rlimit_nofile is capped at this shell's hard limit (raising it needs root).
conf="$RUN_DIR/nginx.conf"
nofile=$(ulimit -Hn)
[[ $nofile == unlimited || $nofile -gt 65535 ]] && nofile=65535
sed -e "s#/sockets/#$RUN_DIR/#g" -e "s/listen 9999 /listen $PORT /" \
    -e "s/worker_rlimit_nofile [0-9]*;/worker_rlimit_nofile $nofile;/" "$ROOT/nginx.conf" \
    | sed -e "s#^http {#http {\n    client_body_temp_path $RUN_DIR/body;\n    proxy_temp_path $RUN_DIR/proxy;#" \
    >"$conf"
wait_for "api1 socket" test -S "$RUN_DIR/api1.sock"
wait_for "api2 socket" test -S "$RUN_DIR/api2.sock"
start nginx "$NGINX" -e stderr -c "$conf" -p "$RUN_DIR" -g "daemon off; pid $RUN_DIR/nginx.pid;"
wait_for "nginx on :$PORT" port_busy "$PORT"
log "up: http://127.0.0.1:$PORT (pids in $RUN_DIR/pids); Ctrl-C stops"

if [[ -n ${RUN_SECONDS:-} ]]; then
    sleep "$RUN_SECONDS" &
    PIDS+=("$!")
    NAMES+=("timer")
fi
set +e
wait -n "${PIDS[@]}"
rc=$?
set -e
for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
        [[ ${NAMES[i]} == timer ]] && { log "RUN_SECONDS elapsed"; rc=0; } ||
            log "${NAMES[i]} (pid ${PIDS[i]}) exited with status $rc"
        break
    fi
done
exit "$rc"
