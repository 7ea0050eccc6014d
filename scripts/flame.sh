#!/usr/bin/env bash
# CPU flame graph of both rinha instances under a bench scenario. Called by `make flame`.
#
# Runs `bench/run.py` (the compose stack with its cgroup limits, as every bench run), and as
# soon as the run lists its processes (`pids` in its results) attaches `perf record` to the
# two instances by PID until the run ends; then folds the samples with inferno. DWARF call
# graphs: the release profile keeps line tables and unwind tables, so no frame-pointer
# rebuild is needed. perf makes every context switch of the instances dearer, so the run's
# p99 and cost figures are worse than without it. Everything lands in one directory:
#   bench/results/flame-<timestamp>-<scenario>/flame-<scenario>.svg   the flame graph
#     flame.folded, perf.log, bench/ (the run's results: timeline, cost table)
#
# Environment: SCENARIO [smoke], FREQ [499] samples per CPU-second of rinha, TOOLS [target/tools] (inferno's root),
#              PORTS [8001,8002,9999] (default processor, fallback, load balancer),
#              DIR [bench/results/flame-<timestamp>-<scenario>], KEEP_PERF [0]: 1 keeps perf.data.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SCENARIO=${SCENARIO:-smoke}
FREQ=${FREQ:-499}
TOOLS=${TOOLS:-$ROOT/target/tools}
NAME=$(basename "$SCENARIO" .json)
DIR=${DIR:-bench/results/flame-$(date +%Y%m%d-%H%M%S)-$NAME}
SVG=$DIR/flame-$NAME.svg
PORTS=${PORTS:-8001,8002,9999}
DATA=$DIR/perf.data

log() { printf '[flame] %s\n' "$*" >&2; }

command -v perf >/dev/null || { log "perf not found (apt-get install linux-perf)"; exit 1; }
[[ -x $TOOLS/bin/inferno-flamegraph ]] ||
    { log "inferno missing: cargo install --root $TOOLS inferno"; exit 1; }
mkdir -p "$DIR"

run_pid='' perf_pid=''
cleanup() {
    [[ -n $perf_pid ]] && kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" || true
    [[ -n $run_pid ]] && kill -TERM "$run_pid" 2>/dev/null && wait "$run_pid" || true
}
trap cleanup EXIT

# A failing verdict (e.g. smoke's --strict) still leaves a profile worth folding.
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
bench/.venv/bin/python bench/run.py --scenario "$SCENARIO" --ports "$PORTS" ${BENCH_ARGS:-} --out "$DIR/bench" &
run_pid=$!
pids=''
for _ in $(seq 600); do  # the stack is up within 60 s or the run has failed
    pids=$(awk '/^api[0-9]+ /{print $2}' "$DIR/bench/pids" 2>/dev/null | paste -sd,) || true
    [[ -n $pids ]] && break
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.1
done
[[ -n $pids ]] || { log "the bench did not start the instances"; exit 1; }

log "recording pids $pids, $FREQ samples per CPU-second, during scenario $SCENARIO"
# A fixed period of each thread's own CPU time, not -F: in frequency mode a thread that
# runs in sub-millisecond bursts (every processor-client worker) is never sampled.
perf record -q -e cpu-clock -c $((1000000000 / FREQ)) --call-graph dwarf,16384 -p "$pids" \
    -o "$DATA" 2>"$DIR/perf.log" &
perf_pid=$!
bench_rc=0
wait "$run_pid" || bench_rc=$?
run_pid=''
kill -INT "$perf_pid" 2>/dev/null || true  # perf stops by itself when the instances exit
wait "$perf_pid" || true
perf_pid=''

log "folding stacks (perf script can take a few minutes)"
# One tower per kind of thread: worker-17 and worker-203 fold into worker-*.
timeout 1200 perf script -i "$DATA" 2>/dev/null | "$TOOLS/bin/inferno-collapse-perf" |
    sed -E 's/^([^;]*[^0-9;])[0-9]+;/\1*;/' |
    awk '{i = match($0, / [0-9]+$/); sum[substr($0, 1, i - 1)] += substr($0, i + 1)}
         END {for (s in sum) printf "%s %.0f\n", s, sum[s]}' |
    sort >"$DIR/flame.folded"
"$TOOLS/bin/inferno-flamegraph" --title "rinha: $NAME @ $(git rev-parse --short HEAD)" \
    <"$DIR/flame.folded" >"$SVG"
[[ ${KEEP_PERF:-0} == 1 ]] || rm -f "$DATA"
log "wrote $SVG ($(wc -l <"$DIR/flame.folded") distinct stacks); bench exit status $bench_rc"
