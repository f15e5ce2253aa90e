#!/usr/bin/env bash
# redis 7.0.15's own tests, run with redis's harness in external mode, unmodified, against
# `tcp-reactor serve --protocol resp`: unit/type/incr, unit/protocol, unit/keyspace and
# unit/type/string. The tests that need a command tcp-reactor does not serve are listed,
# each with that command, in skip.txt; every other test must pass.
#
# Usage: tests/redis-suite/run.sh [path/to/tcp-reactor] (default: target/debug's, built
# first with `cargo build`). Needs tclsh (Debian: tcl); without it, says so and exits 0.
# Prints pass / fail / skipped per file; exits 1 if any test failed.
#
# The files under tests/ here are redis's, from tag 7.0.15 of github.com/redis/redis
# (BSD-3-Clause, see COPYING), unchanged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if ! command -v tclsh >/dev/null; then
    echo "SKIPPED: tclsh is missing (Debian package tcl): redis's suite not run"
    exit 0
fi
bin=${1:-}
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --quiet --bin tcp-reactor)
    bin=$root/target/debug/tcp-reactor
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
"$bin" serve --protocol resp --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

failed=0
cd "$here"
printf '%-18s %5s %5s %8s\n' file pass fail skipped
for unit in unit/type/incr unit/protocol unit/keyspace unit/type/string; do
    log="$work/$(basename "$unit").log"
    # --durable: a failing test is counted and the file goes on.
    timeout 300 tclsh tests/test_helper.tcl --host 127.0.0.1 --port "$port" --singledb \
        --durable --skipfile skip.txt --single "$unit" >"$log" 2>&1 || true
    plain=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
    pass=$(grep -c '^\[ok\]' <<<"$plain" || true)
    fail=$(grep -c '^\[\(err\|exception\)\]' <<<"$plain" || true)
    skip=$(grep -c '^\[\(skip\|ignore\)\]' <<<"$plain" || true)
    if ! grep -q '^\[ok\]\|All tests passed' <<<"$plain" || grep -q '^\[exception\]' <<<"$plain"; then
        fail=$((fail + 1))
    fi
    printf '%-18s %5s %5s %8s\n' "$unit" "$pass" "$fail" "$skip"
    if ((fail > 0)); then
        failed=1
        grep -A4 '^\[\(err\|exception\)\]' <<<"$plain" | head -40
    fi
done
rm -rf "$here/tests/tmp"
exit "$failed"
