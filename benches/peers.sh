#!/usr/bin/env bash
# The head-to-head: tcp-reactor against redis-server, nginx (plain and TLS), HAProxy and a
# tokio echo server, cell by cell, in alternated rounds (benches/peers.py says how).
#
#   benches/peers.sh [--install] [peers.py options: --rounds 5 --duration 5 --cells a,b
#                    --profile --breakdown --idle 2000 --no-syscalls]
#
# --install  apt-get the peers and load generators first (redis-server redis-tools
#            nginx-light haproxy wrk openssl linux-perf). CI does not run this script.
#
# Builds the release binary and the bench crate (whose binary serves the tokio echo), then
# runs every cell. Prints a markdown table, appends it to target/bench-report/report.md and
# writes every run to target/bench-report/peers-TIME.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == --install ]]; then
    shift
    apt-get update
    apt-get install -y redis-server redis-tools nginx-light haproxy wrk openssl linux-perf python3
fi
for tool in redis-server redis-benchmark nginx haproxy wrk openssl perf taskset python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "peers.sh: $tool is missing; run benches/peers.sh --install" >&2
        exit 1
    fi
done

cargo build --release --quiet --bin tcp-reactor
TOKIO=$(cargo bench --bench compare --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "compare" and m.get("executable"):
        print(m["executable"])')
exec python3 benches/peers.py --ours target/release/tcp-reactor --tokio "$TOKIO" "$@"
