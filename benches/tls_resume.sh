#!/bin/bash
# Server CPU per TLS handshake, full against resumed (session tickets).
# Usage: benches/tls_resume.sh BINARY [ROUNDS]. Starts `BINARY serve --protocol http`
# pinned to CPU 0 with a fresh self-signed P-256 certificate, then for TLS 1.2 and 1.3
# alternates `openssl s_time -new` (every connection a full handshake) and `-reuse`
# (every connection resumes the first one's session) for 2 s each, ROUNDS times
# (default 5), with `GET /` on each connection, openssl pinned to CPU 1. Prints per run:
# version, round, mode, connections, and the server's CPU microseconds per connection
# (its threads' run time, /proc/PID/task/*/schedstat). Take the medians.
set -euo pipefail
binary=$1
rounds=${2:-5}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$dir/key.pem" \
    -out "$dir/cert.pem" -days 1 -nodes -subj /CN=localhost 2>/dev/null
port=$((20000 + RANDOM % 10000))
taskset -c 0 "$binary" serve --protocol http --addr "127.0.0.1:$port" \
    --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" >/dev/null 2>&1 &
pid=$!
sleep 0.5
cpu_ns() {
    local t=0 ns
    for f in /proc/$pid/task/*/schedstat; do
        read -r ns _ < "$f"
        t=$((t + ns))
    done
    echo $t
}
for version in -tls1_2 -tls1_3; do
    for round in $(seq 1 "$rounds"); do
        for mode in -new -reuse; do
            before=$(cpu_ns)
            out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" "$version" "$mode" \
                -www / -time 2 2>&1)
            after=$(cpu_ns)
            conns=$(echo "$out" | grep -oE '^[0-9]+ connections' | head -n 1 | cut -d' ' -f1)
            echo "$version $round $mode $conns $(( (after - before) / conns / 1000 ))"
        done
    done
done
