#!/usr/bin/env bash
# The reactor's write policies side by side on echo: `tcp-reactor serve --write-policy P`
# under `tcp-reactor load`, the policies alternating within each cell (P1 P2 P3 P1 P2 P3 ...),
# so noise from other work on the machine hits every policy of a cell alike.
#
#   benches/policies.sh
#
# Pinning: server on CPU 0, load generator (one thread) on CPU 1 (taskset).
#
# Per run: msg/s, p50/p99 (the load generator's), server CPU per message (/proc/PID/stat,
# user + system) and the server's syscalls per message, counted by the server itself (its
# stats: `epoll_wait` = polls, `read` and `write` calls on connections; accepts excluded),
# so no tracer slows it down. The table shows the median run of each cell and policy.
#
# Settings (environment): PORT (19090), POLICIES ("eager end-of-turn adaptive"),
# CONNS ("1 10 100 1000"), PIPELINES ("1 16"), SIZE (64), MESSAGES (200000; per run),
# REPEAT (3), EXTRA (more `serve` flags, e.g. "--defer-min-events 4").
# Prints a markdown table and appends it to target/bench-report/policies.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-19090}
POLICIES=${POLICIES:-eager end-of-turn adaptive}
CONNS=${CONNS:-1 10 100 1000}
PIPELINES=${PIPELINES:-1 16}
SIZE=${SIZE:-64}
MESSAGES=${MESSAGES:-200000}
REPEAT=${REPEAT:-3}
EXTRA=${EXTRA:-}

cargo build --release --quiet --bin tcp-reactor
BIN=target/release/tcp-reactor
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# CPU time (user + system, clock ticks) of process $1 so far.
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Wait until something listens on 127.0.0.1:$PORT (at most 10 s).
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "policies.sh: nothing listens on port $PORT" >&2
    exit 1
}

# One run: policy $1, connections $2, pipeline $3. Appends a row to rows.tsv.
run() {
    local policy=$1 conns=$2 pipeline=$3
    # shellcheck disable=SC2086 # EXTRA is a list of flags.
    RUST_LOG=error taskset -c 0 "$BIN" serve --protocol echo --addr "127.0.0.1:$PORT" \
        --write-policy "$policy" --max-connections 15000 $EXTRA >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port
    local before after ramp=0
    [[ $conns -ge 1000 ]] && ramp=0.5
    before=$(cpu_ticks "$SERVER_PID")
    taskset -c 1 "$BIN" load --addr "127.0.0.1:$PORT" --connections "$conns" --size "$SIZE" \
        --pipeline "$pipeline" --messages "$MESSAGES" --ramp "$ramp" --threads 1 --json \
        --quiet >"$WORK/load.json"
    after=$(cpu_ticks "$SERVER_PID")
    kill -INT "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    python3 - "$WORK/load.json" "$WORK/server.log" "$policy" "$conns" "$pipeline" \
        "$before" "$after" "$(getconf CLK_TCK)" >>"$WORK/rows.tsv" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))
stats = {}
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) == 2 and parts[1].isdigit():
        stats[parts[0]] = int(parts[1])
policy, conns, pipeline = sys.argv[3:6]
before, after, hz = (int(v) for v in sys.argv[6:9])
# Every echoed message, the warm-up one per connection included, was served.
n = load["messages"] + int(conns)
cpu_us = (after - before) * 1e6 / hz / n
syscalls = (stats["polls"] + stats["reads"] + stats["writes"]) / n
print("\t".join(str(v) for v in [
    policy, conns, pipeline, round(load["messages_per_sec"]),
    load["latency_us"]["p50"], load["latency_us"]["p99"], f"{cpu_us:.2f}",
    f"{syscalls:.3f}", f"{stats['polls'] / n:.4f}",
    f"{stats['events'] / max(stats['polls'], 1):.1f}",
    sum(load["errors"].values()),
]))
PY
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for pipeline in $PIPELINES; do
    for conns in $CONNS; do
        for _ in $(seq "$REPEAT"); do
            for policy in $POLICIES; do
                run "$policy" "$conns" "$pipeline"
                tail -n 1 "$WORK/rows.tsv" >&2
            done
        done
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

report() {
    echo "## Write policies on echo ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores)"
    echo
    echo "Server on CPU 0, load generator on CPU 1; $SIZE B messages, $MESSAGES per run;"
    echo "median of $REPEAT alternating runs by msg/s (CPU and syscalls: medians too)."
    echo "Load average $LOAD_BEFORE before, $LOAD_AFTER after."
    echo
    echo "| policy | conns | pipeline | msg/s | p50 us | p99 us | server CPU us/msg | syscalls/msg | epoll_wait/msg | events/poll | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    python3 - "$WORK/rows.tsv" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows.setdefault(tuple(f[:3]), []).append(f)
def med(runs, i):
    return statistics.median(float(r[i]) for r in runs)
for key, runs in sorted(rows.items(), key=lambda kv: (int(kv[0][2]), int(kv[0][1]))):
    runs.sort(key=lambda r: float(r[3]))
    mid = runs[(len(runs) - 1) // 2]
    print(f"| {key[0]} | {key[1]} | {key[2]} | {mid[3]} | {float(mid[4]):.0f} | "
          f"{float(mid[5]):.0f} | {med(runs, 6):.2f} | {med(runs, 7):.3f} | "
          f"{med(runs, 8):.4f} | {med(runs, 9):.1f} | {sum(int(r[10]) for r in runs)} |")
PY
    echo
}

mkdir -p target/bench-report
report | tee -a target/bench-report/policies.md
