#!/usr/bin/env bash
# The reactor's write policies side by side, in one run: each policy of `tcp-reactor serve
# --write-policy P` in turn within every repetition (P1 P2 P3 peer, P1 P2 P3 peer, ...), so
# noise from other work on the machine hits every policy of a cell alike.
#
#   benches/policies.sh [echo] [resp] [http]      (default: all three)
#
# - echo: `tcp-reactor load` at CONNS connections x PIPELINES in flight, 64 B messages;
# - resp: `redis-benchmark -t ping_mbulk,set,get -c 50`, -P 1 and -P 16, one test at a
#   time, with redis-server as the reference row;
# - http: `wrk -t1 -c100`, with nginx (1 worker, access log off) as the reference row.
#
# Pinning: server on CPU 0, load generator on CPU 1 (taskset).
#
# Per run: throughput, p50/p99 (the load generator's), server CPU per request
# (/proc/PID/stat, user + system, children included) and the server's syscalls and
# `epoll_wait` calls per request. Syscalls are counted by `perf stat` on the server's
# processes (counters enabled through a control fifo once attached, so counting has begun
# before the load starts); without perf, the tcp-reactor rows count them from the server's
# own stats (polls + reads + writes; accepts excluded) and the peers show "?".
# The table shows the median run of each cell (by throughput; CPU and syscalls are medians
# of their own).
#
# Settings (environment): PORT (19090), POLICIES ("eager end-of-turn adaptive"),
# CONNS ("1 10 100 1000"), PIPELINES ("1 16"), MESSAGES (200000, echo, per run),
# REQUESTS (200000, resp -P 1), REQUESTS_PIPELINED (2000000, resp -P 16), DURATION (10s,
# wrk), REPEAT (3), EXTRA (more `serve` flags, e.g. "--read-budget 65536"; with
# POLICIES=adaptive, "--defer-min-events 4": serve refuses it with the others), TOKIO_ECHO
# (the `compare` bench binary, target/release/deps/compare-*: adds its tokio
# current_thread echo server as the echo reference row).
# Needs python3; resp and http need redis-benchmark, redis-server, wrk and nginx
# (`benches/peers.sh --install`). Prints markdown tables and appends them to
# target/bench-report/policies.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

PORT=${PORT:-19090}
POLICIES=${POLICIES:-eager end-of-turn adaptive}
CONNS=${CONNS:-1 10 100 1000}
PIPELINES=${PIPELINES:-1 16}
MESSAGES=${MESSAGES:-200000}
REQUESTS=${REQUESTS:-200000}
REQUESTS_PIPELINED=${REQUESTS_PIPELINED:-2000000}
DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-3}
EXTRA=${EXTRA:-}
PARTS=("$@")
[[ ${#PARTS[@]} -eq 0 ]] && PARTS=(echo resp http)

cargo build --release --quiet --bin tcp-reactor
BIN=target/release/tcp-reactor
WORK=$(mktemp -d)
SERVER_PID=
PERF_PID=
cleanup() {
    [[ -n $PERF_PID ]] && kill -INT "$PERF_PID" 2>/dev/null
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PERF=false
if command -v perf >/dev/null &&
    perf stat -e raw_syscalls:sys_enter -e syscalls:sys_enter_epoll_wait -- true >/dev/null 2>&1; then
    PERF=true
fi

# CPU time (user + system, clock ticks) of process $1 and its children so far.
cpu_ticks() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        if [[ -r /proc/$pid/stat ]]; then
            total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
        fi
    done
    echo "$total"
}

# Wait until something listens on 127.0.0.1:$PORT (at most 10 s).
wait_port() {
    if ! wait_listening "$PORT"; then
        echo "policies.sh: nothing listens on port $PORT" >&2
        exit 1
    fi
}

# Start server "$@" on CPU 0 and wait for its port.
start() {
    taskset -c 0 "$@" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port
}

# Stop the server (ours then prints its stats).
stop() {
    # SIGTERM: a job started in the background of a script ignores SIGINT unless it
    # installs its own handler (ours, redis and nginx do; the tokio echo does not).
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# Start one measured run: CPU time now, and perf counting once it has surely attached.
measure_begin() {
    CPU_BEFORE=$(cpu_ticks "$SERVER_PID")
    PERF_PID=
    $PERF || return 0
    local pids
    # shellcheck disable=SC2046 # pgrep prints one pid per line.
    pids=$(echo "$SERVER_PID" $(pgrep -P "$SERVER_PID" || true) | tr ' ' ',')
    rm -f "$WORK/perf.ctl" "$WORK/perf.ack" "$WORK/perf.csv"
    mkfifo "$WORK/perf.ctl" "$WORK/perf.ack"
    perf stat -x, -D -1 --control "fifo:$WORK/perf.ctl,$WORK/perf.ack" \
        -e raw_syscalls:sys_enter -e syscalls:sys_enter_epoll_wait -p "$pids" \
        -o "$WORK/perf.csv" 2>/dev/null &
    PERF_PID=$!
    exec 5>"$WORK/perf.ctl" 6<"$WORK/perf.ack"
    echo enable >&5
    local ack
    read -r -t 30 -u 6 ack || echo "policies.sh: perf did not start counting" >&2
    exec 5>&- 6<&-
}

# End the run: set CPU_TICKS and SYSCALLS ("all epoll_wait", or "? ?" without perf).
measure_end() {
    CPU_TICKS=$(($(cpu_ticks "$SERVER_PID") - CPU_BEFORE))
    SYSCALLS="? ?"
    [[ -z $PERF_PID ]] && return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
    SYSCALLS=$(awk -F, '
        $3 == "raw_syscalls:sys_enter" { all = $1 + 0 }
        $3 == "syscalls:sys_enter_epoll_wait" { ep = $1 + 0 }
        END { print all + 0, ep + 0 }' "$WORK/perf.csv")
}

# Record a row: part, server, cell, throughput, p50 us, p99 us, requests, then the
# measurement of measure_end. Without perf, a stopped tcp-reactor's own counts fill in.
row() {
    local syscalls=$SYSCALLS
    if [[ $syscalls == "? ?" && -f $WORK/stats ]]; then
        syscalls=$(awk '$1 == "polls" { p = $2 } $1 == "reads" { r = $2 }
            $1 == "writes" { w = $2 } END { print p + r + w, p }' "$WORK/stats")
    fi
    # shellcheck disable=SC2086 # two fields.
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$CPU_TICKS" $syscalls \
        >>"$WORK/rows.tsv"
    tail -n 1 "$WORK/rows.tsv" >&2
}

# The `serve` flags for write policy $1.
policy_flags() {
    echo "--write-policy $1 $EXTRA"
}

# Echo, one run: policy $1 (or "tokio": the reference server of TOKIO_ECHO), connections
# $2, pipeline $3.
echo_run() {
    local ramp=0 name="tcp-reactor ($1)"
    [[ $2 -ge 1000 ]] && ramp=0.5
    if [[ $1 == tokio ]]; then
        name="tokio current_thread"
        # It does not raise its own descriptor limit, as our server does.
        ulimit -n "$(ulimit -Hn)"
        start "$TOKIO_ECHO" __tokio-echo current "127.0.0.1:$PORT"
    else
        # shellcheck disable=SC2046 # flags are words.
        start env RUST_LOG=error "$BIN" serve --protocol echo --addr "127.0.0.1:$PORT" \
            --max-connections 15000 $(policy_flags "$1")
    fi
    measure_begin
    taskset -c 1 "$BIN" load --addr "127.0.0.1:$PORT" --connections "$2" --size 64 \
        --pipeline "$3" --messages "$MESSAGES" --ramp "$ramp" --threads 1 --json \
        --quiet >"$WORK/load.json"
    measure_end
    stop
    cp "$WORK/server.log" "$WORK/stats"
    # Every echoed message, the warm-up one per connection included, was served.
    read -r rate p50 p99 served < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(round(r["messages_per_sec"]), r["latency_us"]["p50"], r["latency_us"]["p99"],
      r["messages"] + int(sys.argv[2]))' "$WORK/load.json" "$2")
    row echo "$name" "c$2 p$3" "$rate" "$p50" "$p99" "$served"
    rm -f "$WORK/stats"
}

# redis-benchmark against the running server, named $1: every test at pipeline $2.
resp_tests() {
    local requests=$REQUESTS test
    [[ $2 != 1 ]] && requests=$REQUESTS_PIPELINED
    for test in ping_mbulk set get; do
        measure_begin
        taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$PORT" -t "$test" -c 50 \
            -n "$requests" -P "$2" --csv 2>/dev/null | tail -n 1 >"$WORK/rb.csv"
        measure_end
        # CSV: "test","rps","avg","min","p50","p95","p99","max" (quoted, ms).
        IFS=, read -r name rate _ _ p50 _ p99 _ < <(tr -d '"' <"$WORK/rb.csv")
        row resp "$1" "$name -P $2" "$rate" "$(awk -v v="$p50" 'BEGIN { print v * 1000 }')" \
            "$(awk -v v="$p99" 'BEGIN { print v * 1000 }')" "$requests"
    done
}

# RESP, one repetition: every policy, then redis-server.
resp_round() {
    local policy pipeline
    for policy in $POLICIES; do
        for pipeline in 1 16; do
            # shellcheck disable=SC2046 # flags are words.
            start env RUST_LOG=error "$BIN" serve --protocol resp --addr "127.0.0.1:$PORT" \
                $(policy_flags "$policy")
            resp_tests "tcp-reactor ($policy)" "$pipeline"
            stop
        done
    done
    for pipeline in 1 16; do
        start redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no
        resp_tests "redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')" "$pipeline"
        stop
    done
}

# Convert a wrk latency ("123.45us", "1.20ms", "1.01s") to microseconds.
to_us() {
    awk -v t="$1" 'BEGIN {
        if (t ~ /us$/) { sub(/us$/, "", t); print t + 0 }
        else if (t ~ /ms$/) { sub(/ms$/, "", t); print t * 1000 }
        else if (t ~ /s$/) { sub(/s$/, "", t); print t * 1000000 }
        else print "?"
    }'
}

# wrk against the running server, named $1.
http_test() {
    measure_begin
    taskset -c 1 wrk -t1 -c100 "-d$DURATION" --latency "http://127.0.0.1:$PORT/" >"$WORK/wrk.out"
    measure_end
    row http "$1" "wrk -t1 -c100" \
        "$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$WORK/wrk.out")" \
        "$(to_us "$(awk '$1 == "50%" { print $2 }' "$WORK/wrk.out")")" \
        "$(to_us "$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.out")")" \
        "$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")"
}

# HTTP, one repetition: every policy, then nginx.
http_round() {
    local policy
    for policy in $POLICIES; do
        # shellcheck disable=SC2046 # flags are words.
        start env RUST_LOG=error "$BIN" serve --protocol http --addr "127.0.0.1:$PORT" \
            $(policy_flags "$policy")
        http_test "tcp-reactor ($policy)"
        stop
    done
    start nginx -c "$(nginx_conf_in "$WORK" 1 "$PORT")"
    http_test "nginx $(nginx -v 2>&1 | sed 's/.*\///')"
    stop
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for part in "${PARTS[@]}"; do
    case $part in
        echo)
            for pipeline in $PIPELINES; do
                for conns in $CONNS; do
                    for _ in $(seq "$REPEAT"); do
                        for policy in $POLICIES ${TOKIO_ECHO:+tokio}; do
                            echo_run "$policy" "$conns" "$pipeline"
                        done
                    done
                done
            done
            ;;
        resp) for _ in $(seq "$REPEAT"); do resp_round; done ;;
        http) for _ in $(seq "$REPEAT"); do http_round; done ;;
        *)
            echo "policies.sh: unknown part $part (echo, resp, http)" >&2
            exit 1
            ;;
    esac
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

report() {
    echo "## Write policies ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores)"
    echo
    echo "Server on CPU 0, load generator on CPU 1. Median of $REPEAT runs, the policies (and"
    echo "the peer) alternating. Load average $LOAD_BEFORE before, $LOAD_AFTER after."
    echo "Syscalls: $($PERF && echo "perf stat on the server" || echo "the server's own counts")."
    echo
    echo "| part | server | load | req/s | p50 us | p99 us | server CPU us/req | syscalls/req | epoll_wait/req | runs, req/s |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    python3 - "$WORK/rows.tsv" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
hz = float(sys.argv[2])
rows = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows.setdefault(tuple(f[:3]), []).append(f)
def num(v):
    try:
        return float(v)
    except ValueError:
        return None
for (part, server, load), runs in rows.items():
    runs.sort(key=lambda r: num(r[3]) or 0)
    mid = runs[(len(runs) - 1) // 2]
    per = lambda i: [num(r[i]) / float(r[6]) for r in runs if num(r[i]) is not None and float(r[6]) > 0]
    cpu = statistics.median(float(r[7]) * 1e6 / hz / float(r[6]) for r in runs)
    sys_, ep = per(8), per(9)
    show = lambda v, d: f"{statistics.median(v):.{d}f}" if v else "?"
    print(f"| {part} | {server} | {load} | {num(mid[3]) or 0:.0f} | {num(mid[4]) or 0:.0f} | "
          f"{num(mid[5]) or 0:.0f} | {cpu:.2f} | {show(sys_, 3)} | {show(ep, 4)} | "
          f"{', '.join(str(round(num(r[3]) or 0)) for r in runs)} |")
PY
    echo
}

mkdir -p target/bench-report
report | tee -a target/bench-report/policies.md
