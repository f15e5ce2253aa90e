#!/usr/bin/env bash
# Peer comparison: tcp-reactor's `http` against nginx and its `resp` against redis-server,
# one worker against one worker, then two against two, all on loopback, in one run.
#
#   benches/peers.sh [--install]
#   benches/peers.sh --proxy [--install]   (our proxy against HAProxy: peers_proxy.sh)
#
# --install  apt-get the peers and load generators first (wrk nginx-light redis-server
#            redis-tools). CI does not run this script and does not need these packages.
#
# Pinning (the machine this was written on has 2 cores):
#   1 worker:  server on CPU 0, load generator on CPU 1 (taskset).
#   2 workers: server and load generator share CPUs 0-1 (no core is left for the load
#              generator alone), the same way for both peers.
#
# Each measurement is repeated REPEAT times, alternating the two peers (A B A B ...), and
# the table shows the median run (all runs are listed too): a shared machine is noisy.
#
# Noise watch, as in `cargo bench --bench compare`: around every run the script reads
# /proc/stat, the server's CPU time (/proc/PID/stat, its children included), the load
# generator's (this shell's finished children, `times`) and /proc/loadavg. "others" is the
# CPU time neither took, plus steal, as a share of all CPUs; a run where it passes
# NOISE_LIMIT percent is counted as noisy in the table.
#
# TLS (with TLS=1, the default): in the 1-worker round, our `http` over TLS against nginx
# over TLS under wrk (TLS 1.3 both, one self-signed P-256 certificate made by openssl for
# this run), and the server memory per idle TLS connection of both (benches/idle_tls.py:
# IDLE_TLS connections, each served one request, then held silent).
#
# Settings (environment): PORT_BASE (18080), DURATION (10s), CONNS (50), REQUESTS
# (200000, unpipelined), REQUESTS_PIPELINED (2000000), PIPELINE (16), REPEAT (3),
# ROUNDS ("1 2": the worker counts to compare), NOISE_LIMIT (5, percent), TLS (1),
# IDLE_TLS (2000).
# Prints markdown tables and appends them to target/bench-report/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# `--proxy`: the proxy comparison against HAProxy instead (benches/peers_proxy.sh).
if [[ ${1:-} == --proxy ]]; then
    exec benches/peers_proxy.sh "${@:2}"
fi

PORT_BASE=${PORT_BASE:-18080}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
REQUESTS=${REQUESTS:-200000}
REQUESTS_PIPELINED=${REQUESTS_PIPELINED:-2000000}
PIPELINE=${PIPELINE:-16}
REPEAT=${REPEAT:-3}
ROUNDS=${ROUNDS:-1 2}
NOISE_LIMIT=${NOISE_LIMIT:-5}
TLS=${TLS:-1}
IDLE_TLS=${IDLE_TLS:-2000}
BODY='Hello, world!\n'

if [[ ${1:-} == --install ]]; then
    apt-get update
    apt-get install -y wrk nginx-light redis-server redis-tools
fi
for tool in wrk nginx redis-server redis-benchmark taskset openssl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "peers.sh: $tool is missing; run benches/peers.sh --install" >&2
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

# Start a server in the background (pinned by the caller's taskset) and remember its pid
# (taskset and env exec the server, so the pid is the server's own).
start() {
    "$@" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

# Stop the servers started so far.
stop_all() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

# Wait until something listens on 127.0.0.1:$1 (at most 10 s).
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "peers.sh: nothing listens on port $1; server log:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

# Write an nginx config for $1 workers on port $2 that returns $BODY to every request;
# with $3 = tls, over TLS 1.3 with the run's certificate.
nginx_conf() {
    mkdir -p "$WORK/nginx"
    local listen="listen 127.0.0.1:$2 reuseport;"
    local conns=$((IDLE_TLS + 1000 > 4096 ? IDLE_TLS + 1000 : 4096))
    if [[ ${3:-} == tls ]]; then
        listen="listen 127.0.0.1:$2 ssl reuseport;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.3;"
    fi
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile $conns;
events { worker_connections $conns; }
http {
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        $listen
        location / {
            default_type text/plain;
            return 200 "$BODY";
        }
    }
}
EOF
    echo "$WORK/nginx/nginx.conf"
}

# Convert a wrk latency ("123.45us", "1.20ms", "1.01s") to milliseconds.
to_ms() {
    awk -v t="$1" 'BEGIN {
        if (t ~ /us$/) { sub(/us$/, "", t); printf "%.3f", t / 1000 }
        else if (t ~ /ms$/) { sub(/ms$/, "", t); printf "%.3f", t }
        else if (t ~ /s$/) { sub(/s$/, "", t); printf "%.3f", t * 1000 }
        else { printf "?" }
    }'
}

COMMANDS=()

# Note a load command for the report, once.
remember() {
    local seen
    for seen in "${COMMANDS[@]}"; do
        [[ $seen == "$1" ]] && return 0
    done
    COMMANDS+=("$1")
}

# CPU time (user + system, in clock ticks) used so far by process $1 and its children
# (nginx's workers); threads are included in a process's own count.
cpu_ticks() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        if [[ -r /proc/$pid/stat ]]; then
            # utime and stime are fields 14 and 15; count after the ")" ending the name.
            total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
        fi
    done
    echo "$total"
}

# Busy, total and steal ticks of all CPUs together (the "cpu" line of /proc/stat). Busy
# counts softirq: with tick-based accounting it is charged to the process it served too.
cpu_stat() {
    awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 + $9, $9 }' /proc/stat
}

# Set CHILD_TICKS to the CPU time, in clock ticks, of this shell's children that have
# finished (the load generators). Call it directly, never in $(...): `times` must run in
# this shell, not in a subshell that has no such children.
children_ticks() {
    times >"$WORK/times"
    CHILD_TICKS=$(awk -v hz="$(getconf CLK_TCK)" 'END {
        total = 0
        for (i = 1; i <= NF; i++) { split($i, t, "m"); total += t[1] * 60 + t[2] }
        printf "%.0f", total * hz
    }' "$WORK/times")
}

# Start the noise watch around one run of the server $SERVER_PID.
noise_begin() {
    read -r NOISE_BUSY NOISE_TOTAL NOISE_STEAL < <(cpu_stat)
    NOISE_SERVER=$(cpu_ticks "$SERVER_PID")
    NOISE_LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    children_ticks
    NOISE_LOAD=$CHILD_TICKS
}

# End the noise watch: set NOISE to others %, steal %, load generator busy (% of one
# core) and the 1-minute load average before and after, tab-separated.
noise_end() {
    local load busy total steal server
    children_ticks
    load=$CHILD_TICKS
    read -r busy total steal < <(cpu_stat)
    server=$(cpu_ticks "$SERVER_PID")
    NOISE=$(awk -v b0="$NOISE_BUSY" -v t0="$NOISE_TOTAL" -v s0="$NOISE_STEAL" -v b="$busy" \
        -v t="$total" -v s="$steal" -v srv=$((server - NOISE_SERVER)) \
        -v ld=$((load - NOISE_LOAD)) -v cpus="$(nproc --all)" -v l0="$NOISE_LOADAVG" \
        -v l1="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
            total = t - t0
            if (total <= 0) { printf "0.0\t0.0\t0\t%s\t%s", l0, l1; exit }
            others = (b - b0) - srv - ld
            if (others < 0) others = 0
            printf "%.1f\t%.1f\t%.0f\t%s\t%s", (others + s - s0) * 100 / total,
                (s - s0) * 100 / total, ld * 100 / (total / cpus), l0, l1
        }')
}

# Server CPU microseconds per request, from tick counts $1 -> $2 over $3 requests.
cpu_per_request() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1e6 / hz / n; else printf "?" }'
}

# Record one result row: server, workers, load, req/s, p50, p99, CPU us/request, then the
# noise watch's five fields (already tab-separated).
row() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/rows.tsv"
}

# Run wrk against port $1 with load CPUs $2 and threads $3; add a row named $4 ($5 workers);
# $6 = https for TLS.
run_wrk() {
    local scheme=${6:-http}
    local cmd=(taskset -c "$2" wrk "-t$3" "-c$CONNS" "-d$DURATION" --latency "$scheme://127.0.0.1:$1/")
    remember "${cmd[*]}"
    local out before after
    before=$(cpu_ticks "$SERVER_PID")
    noise_begin
    out=$("${cmd[@]}")
    noise_end
    after=$(cpu_ticks "$SERVER_PID")
    local rps p50 p99 requests
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    row "$4" "$5" "wrk GET / ($scheme)" "$rps" "$p50" "$p99" "$(cpu_per_request "$before" "$after" "$requests")" \
        "$NOISE"
}

# Run redis-benchmark against port $1 with load CPUs $2 and pipeline $3, one test at a
# time (so server CPU is counted per test); rows named $4 ($5 workers).
run_redis_benchmark() {
    local requests=$REQUESTS
    if [[ $3 != 1 ]]; then
        requests=$REQUESTS_PIPELINED
    fi
    local name
    for name in ping_inline ping_mbulk set get; do
        local cmd=(taskset -c "$2" redis-benchmark -h 127.0.0.1 -p "$1" -t "$name"
            -c "$CONNS" -n "$requests" -P "$3" --csv)
        remember "${cmd[*]}"
        local before after out test rps p50 p99
        before=$(cpu_ticks "$SERVER_PID")
        noise_begin
        out=$("${cmd[@]}" 2>/dev/null)
        noise_end
        after=$(cpu_ticks "$SERVER_PID")
        # CSV: "test","rps","avg","min","p50","p95","p99","max" (quoted).
        IFS=, read -r test rps _ _ p50 _ p99 _ < <(tail -n 1 <<<"$out")
        row "$4" "$5" "${test//\"/} -P $3" "${rps//\"/}" "${p50//\"/}" "${p99//\"/}" \
            "$(cpu_per_request "$before" "$after" "$requests")" "$NOISE"
    done
}

# One round: both HTTP servers and both RESP servers with $1 workers.
# HTTP, one repetition: tcp-reactor then nginx, $1 workers, server CPUs $2, load CPUs $3.
bench_http() {
    local workers=$1 threads=$1 http=$((PORT_BASE)) nginx=$((PORT_BASE + 1))
    start env RUST_LOG=error taskset -c "$2" "$BIN" serve --protocol http \
        --workers "$workers" --addr "127.0.0.1:$http"
    wait_port "$http"
    run_wrk "$http" "$3" "$threads" "tcp-reactor http" "$workers"
    stop_all

    start taskset -c "$2" nginx -c "$(nginx_conf "$workers" "$nginx")"
    wait_port "$nginx"
    run_wrk "$nginx" "$3" "$threads" "nginx $(nginx -v 2>&1 | sed 's/.*\///')" "$workers"
    stop_all
}

# HTTPS, one repetition: tcp-reactor then nginx over TLS, $1 workers, server CPUs $2, load
# CPUs $3.
bench_https() {
    local workers=$1 threads=$1 http=$((PORT_BASE + 4)) nginx=$((PORT_BASE + 5))
    start env RUST_LOG=error taskset -c "$2" "$BIN" serve --protocol http \
        --workers "$workers" --addr "127.0.0.1:$http" \
        --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
    wait_port "$http"
    run_wrk "$http" "$3" "$threads" "tcp-reactor http" "$workers" https
    stop_all

    start taskset -c "$2" nginx -c "$(nginx_conf "$workers" "$nginx" tls)"
    wait_port "$nginx"
    run_wrk "$nginx" "$3" "$threads" "nginx $(nginx -v 2>&1 | sed 's/.*\///')" "$workers" https
    stop_all
}

# Server memory per idle TLS connection, tcp-reactor then nginx (1 worker each, pinned as
# the 1-worker round): a row of $WORK/idle.tsv each.
idle_tls() {
    local http=$((PORT_BASE + 4)) nginx=$((PORT_BASE + 5))
    ulimit -n $((IDLE_TLS + 1000))
    start env RUST_LOG=error taskset -c 0 "$BIN" serve --protocol http \
        --addr "127.0.0.1:$http" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
    wait_port "$http"
    printf 'tcp-reactor http\t%s\n' "$(taskset -c 1 python3 benches/idle_tls.py 127.0.0.1 \
        "$http" "$WORK/cert.pem" "$IDLE_TLS" "$SERVER_PID")" >>"$WORK/idle.tsv"
    stop_all

    start taskset -c 0 nginx -c "$(nginx_conf 1 "$nginx" tls)"
    wait_port "$nginx"
    # nginx's master forks the worker: count both, as idle_tls.py does with children.
    printf 'nginx %s\t%s\n' "$(nginx -v 2>&1 | sed 's/.*\///')" \
        "$(taskset -c 1 python3 benches/idle_tls.py 127.0.0.1 "$nginx" "$WORK/cert.pem" \
            "$IDLE_TLS" "$SERVER_PID")" >>"$WORK/idle.tsv"
    stop_all
}

# RESP, one repetition: tcp-reactor then redis-server, $1 workers, server CPUs $2, load
# CPUs $3, each without and with pipelining.
bench_resp() {
    local workers=$1 resp=$((PORT_BASE + 2)) redis=$((PORT_BASE + 3))
    start env RUST_LOG=error taskset -c "$2" "$BIN" serve --protocol resp \
        --workers "$workers" --addr "127.0.0.1:$resp"
    wait_port "$resp"
    run_redis_benchmark "$resp" "$3" 1 "tcp-reactor resp" "$workers"
    run_redis_benchmark "$resp" "$3" "$PIPELINE" "tcp-reactor resp" "$workers"
    stop_all

    # redis runs commands on one thread; its "2 workers" is io-threads 2 (reads and writes).
    local redis_threads=()
    if [[ $workers != 1 ]]; then
        redis_threads=(--io-threads "$workers" --io-threads-do-reads yes)
    fi
    start taskset -c "$2" redis-server --port "$redis" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no "${redis_threads[@]}"
    wait_port "$redis"
    local version
    version=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')
    run_redis_benchmark "$redis" "$3" 1 "redis $version" "$workers"
    run_redis_benchmark "$redis" "$3" "$PIPELINE" "redis $version" "$workers"
    stop_all
}

# Every measurement with $1 workers, REPEAT times, alternating the peers.
round() {
    local server_cpus=0 load_cpus=1
    if [[ $1 != 1 ]]; then
        server_cpus=0-1 load_cpus=0-1
    fi
    for _ in $(seq "$REPEAT"); do
        bench_http "$1" "$server_cpus" "$load_cpus"
        if [[ $TLS == 1 && $1 == 1 ]]; then
            bench_https "$1" "$server_cpus" "$load_cpus"
        fi
        bench_resp "$1" "$server_cpus" "$load_cpus"
    done
}

if [[ $TLS == 1 ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -addext basicConstraints=critical,CA:FALSE \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    idle_tls
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for workers in $ROUNDS; do
    round "$workers"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

report() {
    local noisy runs
    runs=$(wc -l <"$WORK/rows.tsv")
    noisy=$(awk -F '\t' -v limit="$NOISE_LIMIT" '$8 + 0 > limit + 0' "$WORK/rows.tsv" | wc -l)
    echo "## Peer comparison ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc --all) CPUs ($(awk -F ': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r))"
    echo
    if [[ $noisy == 0 ]]; then
        echo "Noise watch: **quiet**, none of the $runs runs had others above $NOISE_LIMIT% of the CPUs."
    else
        echo "Noise watch: **noisy**, $noisy of $runs runs had others above $NOISE_LIMIT% of the CPUs"
        echo "(the \"noisy runs\" column); their req/s and latencies are not to be trusted."
    fi
    echo
    echo "1 worker: server on CPU 0, load on CPU 1. 2 workers: server and load share CPUs 0-1."
    echo "redis \"2 workers\" = --io-threads 2 --io-threads-do-reads yes. Latencies in ms."
    echo "Machine load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after; other"
    echo "work on the machine shows up as noise (compare the runs of one row)."
    echo
    echo "Median of $REPEAT alternating runs; p50/p99 are those of the median run. Server CPU"
    echo "per request = the server's user+system CPU time during the run / requests served"
    echo "(median over the runs): less sensitive to other load on the machine than req/s."
    echo "Others = CPU time of processes other than the server and the load generator, plus"
    echo "steal, as a share of all CPUs (median and highest run); load busy = the load"
    echo "generator's CPU time over the run's wall time, % of one core (median)."
    echo
    echo "| server | workers | load | req/s | p50 ms | p99 ms | server CPU us/req | every run, req/s | others % (max) | steal % max | load busy % | load avg 1 min | noisy runs |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -v limit="$NOISE_LIMIT" -f - "$WORK/rows.tsv" <<'AWK'
BEGIN { FS = "\t" }
# Sort v[1..m] ascending in place; return its median (the lower middle for an even m).
function median_of(v, m,    a, b, t) {
    for (a = 2; a <= m; a++) {
        t = v[a]
        for (b = a - 1; b > 0 && v[b] > t; b--) v[b + 1] = v[b]
        v[b + 1] = t
    }
    return v[int((m + 1) / 2)]
}
{
    key = $1 FS $2 FS $3
    if (!(key in n)) order[++keys] = key
    n[key]++
    rps[key, n[key]] = $4; p50[key, n[key]] = $5; p99[key, n[key]] = $6
    cpu[key, n[key]] = $7
    others[key, n[key]] = $8; steal[key, n[key]] = $9; busy[key, n[key]] = $10
    load1[key, n[key]] = $11; load1[key, n[key], "after"] = $12
}
END {
    for (i = 1; i <= keys; i++) {
        key = order[i]; m = n[key]; list = ""
        for (a = 1; a <= m; a++) {
            idx[a] = a
            list = list (a > 1 ? ", " : "") sprintf("%.0f", rps[key, a])
        }
        for (a = 2; a <= m; a++) {
            t = idx[a]
            for (b = a - 1; b > 0 && rps[key, idx[b]] + 0 > rps[key, t] + 0; b--) idx[b + 1] = idx[b]
            idx[b + 1] = t
        }
        mid = idx[int((m + 1) / 2)]
        split(key, f, FS)
        # CPU per request: the median over the runs (it is steadier than req/s).
        for (a = 1; a <= m; a++) c[a] = cpu[key, a] + 0
        cpu_median[key] = median_of(c, m)
        # The noise watch: median and worst of the runs.
        noisy[key] = 0; steal_max = 0; lo = ""; hi = ""
        for (a = 1; a <= m; a++) {
            o[a] = others[key, a] + 0; u[a] = busy[key, a] + 0
            if (o[a] > limit + 0) noisy[key]++
            if (steal[key, a] + 0 > steal_max) steal_max = steal[key, a] + 0
            for (e = 0; e < 2; e++) {
                l = (e ? load1[key, a, "after"] : load1[key, a]) + 0
                if (lo == "" || l < lo) lo = l
                if (hi == "" || l > hi) hi = l
            }
        }
        others_median = median_of(o, m)
        printf "| %s | %s | %s | %.0f | %s | %s | %.2f | %s | %.1f (%.1f) | %.1f | %.0f | %.2f–%.2f | %d of %d |\n", f[1], f[2], f[3], rps[key, mid], p50[key, mid], p99[key, mid], cpu_median[key], list, others_median, o[m], steal_max, median_of(u, m), lo, hi, noisy[key], m
        median[key] = rps[key, mid]
    }
    print ""
    print "| workers | load | req/s, tcp-reactor / peer | server CPU per request, tcp-reactor / peer | noisy runs, tcp-reactor / peer |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= keys; i++) {
        split(order[i], f, FS)
        if (f[1] !~ /^tcp-reactor/) continue
        for (j = 1; j <= keys; j++) {
            split(order[j], g, FS)
            if (g[1] !~ /^tcp-reactor/ && g[2] == f[2] && g[3] == f[3] && median[order[j]] > 0 && cpu_median[order[j]] > 0)
                printf "| %s | %s | %.2f (vs %s) | %.2f | %d / %d of %d |\n", f[2], f[3], median[order[i]] / median[order[j]], g[1], cpu_median[order[i]] / cpu_median[order[j]], noisy[order[i]], noisy[order[j]], n[order[i]]
        }
    }
}
AWK
    echo
    if [[ -s $WORK/idle.tsv ]]; then
        echo "Server memory per idle TLS connection ($IDLE_TLS connections, TLS 1.3, each served"
        echo "one request, then silent; resident memory of the server and its children):"
        echo
        echo "| server | connections | RSS before KiB | RSS after KiB | bytes per idle TLS connection |"
        echo "|---|---|---|---|---|"
        awk -F '\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$WORK/idle.tsv"
        echo
    fi
    echo "Load commands:"
    echo
    printf -- '- `%s`\n' "${COMMANDS[@]}"
    echo
}

mkdir -p target/bench-report
report | tee -a target/bench-report/report.md
