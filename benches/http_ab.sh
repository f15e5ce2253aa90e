#!/bin/bash
# wrk against two builds of `tcp-reactor serve --protocol http`, alternated ROUNDS times
# (default 7): run from a directory holding the binaries `old` and `new`. The server is
# pinned to CPU 0 and wrk (Debian package wrk; -t1 -c50 -d3s) to CPU 1. Prints per run:
# round, binary, requests/s, and the server's CPU nanoseconds per request (the run time
# of its threads, /proc/PID/task/*/schedstat, over wrk's request count), which a loaded
# machine disturbs less than requests/s. Take medians of each column.
set -euo pipefail
cpu_ns() {
    local t=0 ns
    for f in /proc/$1/task/*/schedstat; do
        read -r ns _ < "$f"
        t=$((t + ns))
    done
    echo $t
}
for round in $(seq 1 ${ROUNDS:-7}); do
  for bin in old new; do
    port=$((19000 + RANDOM % 900))
    taskset -c 0 ./$bin serve --protocol http --addr 127.0.0.1:$port >/dev/null 2>&1 &
    pid=$!
    sleep 0.4
    before=$(cpu_ns $pid)
    out=$(taskset -c 1 wrk -t1 -c50 -d3s http://127.0.0.1:$port/)
    after=$(cpu_ns $pid)
    kill $pid
    wait $pid 2>/dev/null || true
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "$round $bin $rps $(( (after - before) / reqs ))"
  done
done
