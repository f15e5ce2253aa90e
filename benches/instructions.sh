#!/usr/bin/env bash
# A noise-free guard for the hot path: user-space instructions per request, counted by
# valgrind's callgrind on the server while a fixed small load runs. A busy machine changes
# how long this takes, not the figures, so a change that makes the per-request path heavier
# shows in one command.
#
#   benches/instructions.sh [--peers]
#
# Loads (each on ONE client connection, so every request is one poll, one read and one
# write for the server, whatever the timing; the pipelined rows send 16 requests per write):
#   echo      `tcp-reactor load -c 1 -s 64 -p 1`        (per echoed 64 B message)
#   echo p16  `tcp-reactor load -c 1 -s 64 -p 16`       (per message, 16 in flight)
#   resp GET  `redis-benchmark -c 1 -P 1 -t get`         (per GET of a 3-byte value)
#   resp GET  `redis-benchmark -c 1 -P 16 -t get`        (per GET, 16 per write)
#   http GET  a keep-alive client sending `GET /`, one at a time, then 16 per write
# --peers    also runs the resp loads against redis-server and the http loads against nginx
#            (one process each: `master_process off`), for the same figures.
#
# The server is zeroed (`callgrind_control -z`) after a warm-up on the same connection
# kind, and dumped (`-d`) after the load, so start-up is not counted; accepting the load's
# one connection is (a few thousand instructions, under one per request here).
#
# Settings (environment): REQUESTS (20000), PORT (19190), BIN (a tcp-reactor binary to
# measure instead of building target/release/tcp-reactor), FLAGS (more `serve` flags for
# it, e.g. "--write-policy eager").
# Needs valgrind and python3; --peers also needs redis-server, redis-benchmark and nginx
# (benches/peers.sh --install). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

REQUESTS=${REQUESTS:-20000}
PORT=${PORT:-19190}
PEERS=false
[[ ${1:-} == --peers ]] && PEERS=true

for tool in valgrind callgrind_control python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "instructions.sh: $tool is missing (apt-get install valgrind python3)" >&2
        exit 1
    fi
done
peer_tools=(redis-benchmark)
$PEERS && peer_tools+=(redis-server nginx)
for tool in "${peer_tools[@]}"; do
    if ! command -v "$tool" >/dev/null; then
        echo "instructions.sh: $tool is missing; run benches/peers.sh --install" >&2
        exit 1
    fi
done

if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet --bin tcp-reactor
    BIN=target/release/tcp-reactor
fi
# Not through `env`: valgrind would follow `env`, not the server it execs.
export RUST_LOG=error
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

# A keep-alive HTTP client on one connection: $1 requests, $2 per write; checks each reply.
http_load() {
    python3 - "$PORT" "$1" "$2" <<'PY'
import socket, sys
port, total, batch = (int(v) for v in sys.argv[1:4])
request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
done = 0
while done < total:
    n = min(batch, total - done)
    s.sendall(request * n)
    got = 0
    while got < n:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("http_load: server closed the connection")
            buf += chunk
            continue
        head = buf[:end].decode()
        length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
        if not head.startswith("HTTP/1.1 200") or len(buf) < end + 4 + length:
            if not head.startswith("HTTP/1.1 200"):
                sys.exit(f"http_load: unexpected reply {head!r}")
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("http_load: server closed the connection")
            buf += chunk
            continue
        buf = buf[end + 4 + length:]
        got += 1
    done += n
s.close()
PY
}

# Run load "$@" ($1 is its kind) against the server on $PORT; print nothing.
load() {
    case $1 in
        echo) "$BIN" load --addr "127.0.0.1:$PORT" -c 1 -s 64 -p "$2" -n "$3" -t 1 --quiet \
            >/dev/null ;;
        resp) redis-benchmark -h 127.0.0.1 -p "$PORT" -c 1 -P "$2" -n "$3" -t get -q \
            >/dev/null 2>&1 ;;
        http) http_load "$3" "$2" ;;
    esac
}

# Wait up to 60 s (valgrind starts slowly) for a listener on $PORT.
wait_port() {
    if ! wait_listening "$PORT" 600; then
        echo "instructions.sh: nothing listens on port $PORT" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
}

# Instructions per request of the server started by "${@:4}" under load kind $1 with
# pipeline $2, over REQUESTS requests ($3 names the row).
measure() {
    local kind=$1 pipeline=$2 name=$3
    shift 3
    rm -f "$WORK"/cg.out*
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$@" \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port
    load "$kind" "$pipeline" 200
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    load "$kind" "$pipeline" "$REQUESTS"
    callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
    kill -INT "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    # The dump taken after the load is the one with a numeric suffix.
    local total
    total=$(awk '/^totals:/ { print $2 }' "$WORK"/cg.out.[0-9]* | head -n 1)
    printf '| %s | %s | %s | %s | %.0f |\n' "$name" "$kind" "$pipeline" "$REQUESTS" \
        "$(awk -v t="$total" -v n="$REQUESTS" 'BEGIN { print t / n }')"
}

ours() {
    echo "$BIN" serve --protocol "$1" --addr "127.0.0.1:$PORT" "${FLAGS:-}"
}

# nginx as one process (no master), so callgrind watches the process that serves.
nginx_conf() {
    nginx_conf_in "$WORK" 1 "$PORT" "master_process off;"
}

echo "User-space instructions per request (callgrind), $REQUESTS requests on one connection:"
echo
echo "| server | load | pipeline | requests | instructions/request |"
echo "|---|---|---|---|---|"
for pipeline in 1 16; do
    # shellcheck disable=SC2046 # the command line is a list of words.
    measure echo "$pipeline" "tcp-reactor echo" $(ours echo)
done
for pipeline in 1 16; do
    # shellcheck disable=SC2046
    measure resp "$pipeline" "tcp-reactor resp" $(ours resp)
    if $PEERS; then
        measure resp "$pipeline" "redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')" \
            redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no
    fi
done
for pipeline in 1 16; do
    # shellcheck disable=SC2046
    measure http "$pipeline" "tcp-reactor http" $(ours http)
    if $PEERS; then
        measure http "$pipeline" "nginx $(nginx -v 2>&1 | sed 's/.*\///')" \
            nginx -c "$(nginx_conf)"
    fi
done
