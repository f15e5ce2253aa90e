#!/usr/bin/env python3
"""Server memory per idle TLS connection, measured the same way for any TLS server.

usage: idle_tls.py HOST PORT CA.pem N PID [http|echo]

Opens 20 warm-up connections, reads the server's resident memory (PID and its children,
/proc/PID/status VmRSS), then opens N more TLS 1.3 connections, each verified against
CA.pem for the name localhost and served one request (http) or one echoed byte (echo),
holds them idle for a second and reads the memory again. Prints one tab-separated line:
N, RSS before (KiB), RSS after (KiB), bytes per idle connection.
"""
import resource, socket, ssl, sys, time

host, port, ca, n, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
mode = sys.argv[6] if len(sys.argv) > 6 else "http"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))

def rss_kib(pid):
    total = 0
    for p in [pid] + children(pid):
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []

ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ping = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" if mode == "http" else b"i"
# Warm up: the first connections allocate what any connection needs (session caches).
warm = []
for _ in range(20):
    s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
    s.sendall(ping); s.recv(4096); warm.append(s)
time.sleep(0.5)
before = rss_kib(pid)
held = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
    s.sendall(ping)
    if not s.recv(4096):
        sys.exit("a connection was not served")
    held.append(s)
time.sleep(1.0)
after = rss_kib(pid)
print(f"{n}\t{before}\t{after}\t{(after - before) * 1024 / n:.0f}")
