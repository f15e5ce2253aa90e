#!/usr/bin/env bash
# Proxy peer comparison: `tcp-reactor serve --protocol proxy` against HAProxy 2.6
# (`mode tcp`, `nbthread 1`, from Debian), on the same upstream (our echo server) and the
# same load (`tcp-reactor load`: CONNS connections, SIZE-byte ping-pong), in one run.
# Run as `benches/peers.sh --proxy [--install]`.
#
#   --install  apt-get haproxy first.
#
# Cores (a 2-core machine): the proxy under test gets CPU 0 alone; the upstream and the
# load generator share CPU 1 (taskset).
#
# Our proxy runs under the reactor model ("ours") and, for reference, the threads model
# ("ours-threads": a thread per client and per upstream).
#
# Per run: messages/s (the load generator's report), the proxy's CPU time per message
# (utime + stime from /proc/PID/stat over the run, in microseconds), and the noise: the CPU
# time that neither the proxy, the upstream nor the load generator took, as a share of all
# CPUs ("others"), plus the 1-minute load average. Runs alternate ours / HAProxy, REPEAT
# times; the table shows the median of each column and every run is listed.
#
# Memory per idle pair: IDLE clients connect through the proxy, each exchanges one byte
# and stays open; the proxy's resident memory (VmRSS) after, minus before, over IDLE. That
# is user-space memory only: socket buffers are the kernel's, the same for both.
#
# Settings (environment): PORT_BASE (18280), DURATION (5), CONNS (100), SIZE (64),
# REPEAT (3), IDLE (2000). Prints markdown and appends it to target/bench-report/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT_BASE=${PORT_BASE:-18280}
DURATION=${DURATION:-5}
CONNS=${CONNS:-100}
SIZE=${SIZE:-64}
REPEAT=${REPEAT:-3}
IDLE=${IDLE:-2000}

if [[ ${1:-} == --install ]]; then
    apt-get update
    apt-get install -y haproxy
fi
for tool in haproxy taskset python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "peers.sh --proxy: $tool is missing; run benches/peers.sh --proxy --install" >&2
        exit 1
    fi
done

cargo build --release --quiet --bin tcp-reactor
BIN=target/release/tcp-reactor
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
UPSTREAM=$PORT_BASE
PROXY_PORT=$((PORT_BASE + 1))

# Wait until something listens on 127.0.0.1:$1 (at most 10 s).
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "peers.sh --proxy: nothing listens on port $1" >&2
    exit 1
}

# CPU ticks (user + system) of process $1 so far.
ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Busy and total ticks of all CPUs together.
cpu_stat() {
    awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 + $9 }' /proc/stat
}

# Resident memory of process $1, in KiB.
rss_kib() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

# The upstream: our echo server, on CPU 1 with the load generator.
taskset -c 1 "$BIN" serve --addr "127.0.0.1:$UPSTREAM" --max-connections 20000 \
    >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
wait_port "$UPSTREAM"

cat >"$WORK/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend proxy
    bind 127.0.0.1:$PROXY_PORT
    default_backend upstream
backend upstream
    server echo 127.0.0.1:$UPSTREAM
CFG

# Start proxy $1 (ours or haproxy) on CPU 0; sets PROXY_PID.
start_proxy() {
    case $1 in
        ours | ours-threads)
            taskset -c 0 "$BIN" serve --protocol proxy --addr "127.0.0.1:$PROXY_PORT" \
                --model "$([[ $1 == ours ]] && echo reactor || echo threads)" \
                --upstream "127.0.0.1:$UPSTREAM" --max-connections 20000 >"$WORK/proxy.log" 2>&1 & ;;
        haproxy) taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/proxy.log" 2>&1 & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_port "$PROXY_PORT"
}

stop_proxy() {
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    sleep 0.5
}

# One throughput run through proxy $1; prints "msg/s cpu_us_per_msg others% loadavg".
run_once() {
    start_proxy "$1"
    local p0 u0 b0 t0 p1 u1 b1 t1 load0 load1
    p0=$(ticks "$PROXY_PID"); u0=$(ticks "$UPSTREAM_PID"); read -r b0 t0 < <(cpu_stat)
    times >"$WORK/times0"
    taskset -c 1 "$BIN" load --addr "127.0.0.1:$PROXY_PORT" -c "$CONNS" -s "$SIZE" \
        -d "$DURATION" -t 1 --json --quiet >"$WORK/load.json"
    times >"$WORK/times1"
    p1=$(ticks "$PROXY_PID"); u1=$(ticks "$UPSTREAM_PID"); read -r b1 t1 < <(cpu_stat)
    stop_proxy
    child_ticks() { awk -v hz="$HZ" 'END { s = 0; for (i = 1; i <= NF; i++) { split($i, t, "m"); s += t[1] * 60 + t[2] } printf "%.0f", s * hz }' "$1"; }
    load0=$(child_ticks "$WORK/times0"); load1=$(child_ticks "$WORK/times1")
    python3 - "$WORK/load.json" $((p1 - p0)) $((u1 - u0)) $((load1 - load0)) \
        $((b1 - b0)) $((t1 - t0)) "$HZ" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
proxy, upstream, load, busy, total, hz = map(int, sys.argv[2:8])
msgs, rate = report["messages"], report["messages_per_sec"]
errors = sum(report["errors"].values())
cpu_us = proxy / hz * 1e6 / msgs if msgs else float("nan")
others = max(0, busy - proxy - upstream - load) * 100 / total if total else 0
print(f"{rate:.0f} {cpu_us:.2f} {others:.1f} {sys.argv[8]} {errors}")
PY
}

# Memory per idle pair through proxy $1, in bytes.
idle_once() {
    start_proxy "$1"
    local before
    before=$(rss_kib "$PROXY_PID")
    python3 - "$PROXY_PORT" "$IDLE" "$PROXY_PID" "$before" <<'PY'
import socket, sys, time
port, count, pid, before = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
clients = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x")
    clients.append(s)
for s in clients:
    s.settimeout(10)
    assert s.recv(1) == b"x"
time.sleep(0.5)
rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
print(f"{(rss - before) * 1024 / count:.0f}")
PY
    stop_proxy
}

declare -A RUNS
for round in $(seq "$REPEAT"); do
    for proxy in ours haproxy ours-threads; do
        RUNS[$proxy]+="$(run_once "$proxy")"$'\n'
    done
done
declare -A IDLE_BYTES
for proxy in ours haproxy ours-threads; do
    IDLE_BYTES[$proxy]=$(idle_once "$proxy")
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
{
    echo "### Proxy peers: tcp-reactor proxy vs HAProxy $(haproxy -v | head -1 | awk '{ print $3 }') (mode tcp, nbthread 1)"
    echo
    echo "$CONNS connections × $SIZE B ping-pong, ${DURATION} s per run, $REPEAT runs each alternating; upstream: tcp-reactor echo."
    echo "Cores: proxy on CPU 0 alone; upstream and load generator share CPU 1. $(date -u +%FT%TZ)."
    echo
    echo "| proxy | msg/s (median) | CPU µs/msg (median) | others % (median) | idle pair, bytes |"
    echo "|---|---:|---:|---:|---:|"
    for proxy in ours haproxy ours-threads; do
        runs=${RUNS[$proxy]}
        printf '| %s | %s | %s | %s | %s |\n' "$proxy" \
            "$(awk 'NF { print $1 }' <<<"$runs" | median)" \
            "$(awk 'NF { print $2 }' <<<"$runs" | median)" \
            "$(awk 'NF { print $3 }' <<<"$runs" | median)" \
            "${IDLE_BYTES[$proxy]}"
    done
    echo
    echo "Every run (msg/s, CPU µs/msg, others %, load average, load errors):"
    echo
    for proxy in ours haproxy ours-threads; do
        awk -v p="$proxy" 'NF { printf "- %s: %s msg/s, %s µs/msg, others %s%%, load %s, errors %s\n", p, $1, $2, $3, $4, $5 }' <<<"${RUNS[$proxy]}"
    done
} | tee -a "$(mkdir -p target/bench-report && echo target/bench-report/report.md)"
