#!/usr/bin/env python3
"""Server CPU per TLS handshake, full against resumed (session tickets).

Usage: tls_resume.py BINARY [N [ROUNDS]]. Starts `BINARY serve --protocol echo` with a fresh
self-signed P-256 certificate (made with the openssl command) on a loopback port, then
for TLS 1.2 and TLS 1.3 makes N full handshakes and N resumed ones (each a new
connection, one echoed line, then close), reading the server's CPU time (/proc/PID/task/*/schedstat) around each batch, full and
resumed batches alternated ROUNDS times (default 5). Prints the median CPU microseconds
per handshake of each and their ratio. The server is pinned to CPU 0 (taskset).
Standard library only; each socket wait is bounded by 5 s."""

import os
import socket
import statistics
import ssl
import subprocess
import sys
import tempfile
import time


def cpu_seconds(pid):
    """CPU time of every thread of `pid`: /proc/PID/task/*/schedstat (nanoseconds; the
    clock-tick counts of /proc/PID/stat are too coarse for a few hundred handshakes)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended (the threads model's client threads)
    return total / 1e9


def one(ctx, port, session=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(b"x\n")
            tls.recv(16)
            return tls.session, tls.session_reused


def batch(pid, ctx, port, n, resume):
    session, _ = one(ctx, port)
    reused = 0
    before = cpu_seconds(pid)
    for _ in range(n):
        fresh, was = one(ctx, port, session if resume else None)
        reused += was
        # TLS 1.3 tickets are single-use in spirit: resume with the newest.
        session = fresh if resume and fresh else session
    return (cpu_seconds(pid) - before) / n * 1e6, reused


def main():
    binary, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-keyout", key, "-out", cert, "-days", "1",
                        "-nodes", "-subj", "/CN=localhost"], check=True, capture_output=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            ["taskset", "-c", "0", binary, "serve", "--protocol", "echo", "--addr",
             f"127.0.0.1:{port}", "--tls-cert", cert, "--tls-key", key],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.load_verify_locations(cert)
                ctx.minimum_version = ctx.maximum_version = version
                fulls, resumeds, reused = [], [], 0
                for _ in range(rounds):
                    fulls.append(batch(server.pid, ctx, port, n, False)[0])
                    cost, was = batch(server.pid, ctx, port, n, True)
                    resumeds.append(cost)
                    reused += was
                full, resumed = statistics.median(fulls), statistics.median(resumeds)
                print(f"{version.name}: full {full:.0f} us, resumed {resumed:.0f} us "
                      f"({reused}/{n * rounds} reused), full/resumed {full / resumed:.2f}; "
                      f"full {[round(x) for x in fulls]}, resumed {[round(x) for x in resumeds]}")
        finally:
            server.terminate()
            server.wait(timeout=5)


if __name__ == "__main__":
    main()
