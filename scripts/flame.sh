#!/usr/bin/env bash
# CPU flame graph of both rinha instances under a bench scenario -> bench/results/flame.svg.
#
# Starts the bare-metal stack (scripts/run-local.sh, processors left to the bench), attaches
# `perf record` to the two instances by PID, runs `bench/run.py --no-backend`, then folds
# the samples with inferno. DWARF call graphs: the release profile keeps line tables and
# unwind tables, so no frame-pointer rebuild is needed. Called by `make flame`.
#
# Environment: SCENARIO [smoke], FREQ [499] samples per CPU-second of rinha, TOOLS [target/tools] (inferno's root),
#              PORTS [8001,8002,9999] (default processor, fallback, load balancer),
#              OUT [bench/results/flame.svg].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SCENARIO=${SCENARIO:-smoke}
FREQ=${FREQ:-499}
TOOLS=${TOOLS:-$ROOT/target/tools}
OUT=${OUT:-bench/results/flame.svg}
export RUN_DIR=${RUN_DIR:-/tmp/rinha-flame}
PORTS=${PORTS:-8001,8002,9999}
IFS=, read -r PP_DEFAULT_PORT PP_FALLBACK_PORT PORT <<<"$PORTS"
export PP_DEFAULT_PORT PP_FALLBACK_PORT PORT
RESULTS=$(dirname "$OUT")
DATA=$RESULTS/perf.data

log() { printf '[flame] %s\n' "$*" >&2; }

command -v perf >/dev/null || { log "perf not found (apt-get install linux-perf)"; exit 1; }
[[ -x $TOOLS/bin/inferno-flamegraph ]] ||
    { log "inferno missing: cargo install --root $TOOLS inferno"; exit 1; }
mkdir -p "$RESULTS"

stack_pid='' perf_pid=''
cleanup() {
    [[ -n $perf_pid ]] && kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" || true
    [[ -n $stack_pid ]] && kill -TERM "$stack_pid" 2>/dev/null && wait "$stack_pid" || true
}
trap cleanup EXIT

START_PROCESSORS=0 scripts/run-local.sh >"$RESULTS/flame-stack.log" 2>&1 &
stack_pid=$!
pids=''
for _ in $(seq 100); do
    if grep -q '^nginx ' "$RUN_DIR/pids" 2>/dev/null; then
        pids=$(awk '/^api[0-9]+ /{print $2}' "$RUN_DIR/pids" | paste -sd,)
        break
    fi
    kill -0 "$stack_pid" 2>/dev/null || { cat "$RESULTS/flame-stack.log"; exit 1; }
    sleep 0.1
done
[[ -n $pids ]] || { log "the stack did not come up"; exit 1; }

log "recording pids $pids, $FREQ samples per CPU-second, during scenario $SCENARIO"
# A fixed period of each thread's own CPU time, not -F: in frequency mode a thread that
# runs in sub-millisecond bursts (every processor-client worker) is never sampled.
perf record -q -e cpu-clock -c $((1000000000 / FREQ)) --call-graph dwarf,16384 -p "$pids" \
    -o "$DATA" 2>"$RESULTS/perf.log" &
perf_pid=$!
# A failing verdict (e.g. smoke's --strict) still leaves a profile worth folding.
bench_rc=0
bench/.venv/bin/python bench/run.py --scenario "$SCENARIO" --no-backend --ports "$PORTS" ||
    bench_rc=$?
kill -INT "$perf_pid"
wait "$perf_pid" || true
perf_pid=''

log "folding stacks (perf script can take a minute)"
perf script -i "$DATA" 2>/dev/null | "$TOOLS/bin/inferno-collapse-perf" >"$RESULTS/flame.folded"
"$TOOLS/bin/inferno-flamegraph" --title "rinha: $SCENARIO" <"$RESULTS/flame.folded" >"$OUT"
log "wrote $OUT ($(wc -l <"$RESULTS/flame.folded") distinct stacks); bench exit status $bench_rc"
