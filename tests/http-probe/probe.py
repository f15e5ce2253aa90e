#!/usr/bin/env python3
"""HTTP/1.1 conformance probe: raw requests, each with the exact status (or statuses, for
pipelined requests) that RFC 9110/9112 require of an origin server, sent to a server over
loopback; prints each case that fails and the pass count.

Targets (any number, each reported on its own):
  --addr HOST:PORT     a server already running (e.g. `tcp-reactor serve --protocol http`)
  --binary PATH        start `PATH serve --protocol http` on a free loopback port
  --nginx              start Debian's nginx (/usr/sbin/nginx) with a minimal config on a
                       free loopback port, `return 200` for every path (skipped, saying
                       so, where nginx is missing; this script installs nothing)
--require-all NAME     exit 1 unless target NAME (ours, nginx, or an --addr) passes every case
--require-superset     exit 1 if `ours` fails a case that `nginx` passes

Standard library only. Every wait is bounded (2 s per read, 10 s per server start).
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

H = b"Host: probe\r\n"


def chunked(*pieces, trailers=b""):
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return body + b"0\r\n" + trailers + b"\r\n"


def post_chunked(body, te=b"chunked"):
    return b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + te + b"\r\n\r\n" + body


# (name, request bytes, expected final statuses in order, the RFC section that says so)
CASES = [
    ("get", b"GET / HTTP/1.1\r\n" + H + b"\r\n", [200], "9112 3"),
    ("head", b"HEAD / HTTP/1.1\r\n" + H + b"\r\n", [200], "9110 9.3.2"),
    ("http/1.0 without host", b"GET / HTTP/1.0\r\n\r\n", [200], "9112 3.2"),
    ("absolute form", b"GET http://probe/x HTTP/1.1\r\n" + H + b"\r\n", [200], "9112 3.2.2"),
    ("absolute form, other host", b"GET http://other/ HTTP/1.1\r\n" + H + b"\r\n", [200], "9112 3.2.2"),
    ("host with port", b"GET / HTTP/1.1\r\nHost: probe:8080\r\n\r\n", [200], "9110 7.2"),
    ("host ipv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", [200], "9110 7.2"),
    ("host ipv4", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", [200], "9110 7.2"),
    ("no host in 1.1", b"GET / HTTP/1.1\r\n\r\n", [400], "9112 3.2"),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", [400], "9112 3.2"),
    ("two equal hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", [400], "9112 3.2"),
    ("host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", [400], "9112 3.2"),
    ("host with path", b"GET / HTTP/1.1\r\nHost: h/path\r\n\r\n", [400], "9112 3.2"),
    ("empty host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", [400], "9112 3.2"),
    ("host with userinfo", b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", [400], "9112 3.2"),
    ("host with bad port", b"GET / HTTP/1.1\r\nHost: h:8x\r\n\r\n", [400], "9112 3.2"),
    ("http/1.2 as 1.1", b"GET / HTTP/1.2\r\n" + H + b"\r\n", [200], "9110 2.5"),
    ("http/2.0 line", b"GET / HTTP/2.0\r\n" + H + b"\r\n", [505], "9110 15.6.6"),
    ("http/3.0 line", b"GET / HTTP/3.0\r\n" + H + b"\r\n", [505], "9110 15.6.6"),
    ("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", [400], "9112 2.3"),
    ("long uri", b"GET /" + b"a" * 10240 + b" HTTP/1.1\r\n" + H + b"\r\n", [414], "9112 3"),
    ("asterisk for get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", [400], "9112 3.2.4"),
    ("space before colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", [400], "9112 5.1"),
    ("space in field name", b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", [400], "9110 5.1"),
    ("nul in field value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", [400], "9110 5.5"),
    ("bare cr in field value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", [400], "9112 2.2"),
    ("bad method token", b"G@T / HTTP/1.1\r\n" + H + b"\r\n", [400], "9110 9.1"),
    ("obs-text in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: \xe9t\xe9\r\n\r\n", [200], "9110 5.5"),
    ("empty line before request", b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", [200], "9112 2.2"),
    ("content-length body", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello", [200], "9112 6.2"),
    ("content-length not a number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", [400], "9112 6.3"),
    ("content-length negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", [400], "9112 6.3"),
    ("content-length with plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", [400], "9112 6.3"),
    ("two different lengths", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", [400], "9112 6.3"),
    ("chunked body", post_chunked(chunked(b"hello", b" world")), [200], "9112 7.1"),
    ("chunked, upper-case coding", post_chunked(chunked(b"hello"), te=b"Chunked"), [200], "9112 7"),
    ("chunked with extensions", post_chunked(b"5;a=b;c\r\nhello\r\n0;x=\"y\"\r\n\r\n"), [200], "9112 7.1.1"),
    ("chunked with trailers", post_chunked(chunked(b"abc", trailers=b"X-Sum: 1\r\n")), [200], "9112 7.1.2"),
    ("chunked, upper-case hex", post_chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), [200], "9112 7.1"),
    ("chunked then pipelined get", post_chunked(chunked(b"hi")) + b"GET / HTTP/1.1\r\n" + H + b"\r\n", [200, 200], "9112 7.1"),
    ("chunk size not hex", post_chunked(b"zz\r\nhello\r\n0\r\n\r\n"), [400], "9112 7.1"),
    ("chunk data too long", post_chunked(b"2\r\nabc\r\n0\r\n\r\n"), [400], "9112 7.1"),
    ("chunk size with leading space", post_chunked(b" 5\r\nhello\r\n0\r\n\r\n"), [400], "9112 7.1"),
    ("chunked not last", post_chunked(chunked(b"x"), te=b"chunked, gzip"), [400], "9112 6.1"),
    ("chunked and content-length", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + chunked(b"hello"), [400], "9112 6.1"),
    ("unknown coding", post_chunked(chunked(b"x"), te=b"gzip, chunked"), [501], "9112 6.1"),
    ("expect 100-continue", b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", [200], "9110 10.1.1"),
    ("pipelined gets", (b"GET / HTTP/1.1\r\n" + H + b"\r\n") * 3, [200, 200, 200], "9112 9.3.2"),
    ("keep-alive then bad", b"GET / HTTP/1.1\r\n" + H + b"\r\nGET / HTTP/1.1\r\n\r\n", [200, 400], "9112 3.2"),
    ("connection close", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", [200], "9112 9.6"),
    ("options asterisk", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", [200], "9112 3.2.4"),
    ("trailing whitespace in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b \t\r\n\r\n", [200], "9110 5.5"),
]


def read_statuses(sock, want, head_request):
    """Read responses until `want` final statuses arrived, the peer closed, or 2 s passed
    without a byte; the final statuses seen."""
    sock.settimeout(2)
    buf, got = b"", []
    while len(got) < want:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            try:
                data = sock.recv(65536)
            except (socket.timeout, ConnectionError):
                break
            if not data:
                break
            buf += data
            continue
        head, buf = buf[:end].decode("latin-1"), buf[end + 4:]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            got.append(-1)
            break
        status = int(parts[1])
        if 100 <= status < 200:
            continue
        got.append(status)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if head_request:
            length = 0
        while len(buf) < length:
            try:
                data = sock.recv(65536)
            except (socket.timeout, ConnectionError):
                return got
            if not data:
                return got
            buf += data
        buf = buf[length:]
    return got


def run_case(addr, request, want):
    with socket.create_connection(addr, timeout=2) as sock:
        try:
            sock.sendall(request)
        except ConnectionError:
            pass
        return read_statuses(sock, len(want), request.startswith(b"HEAD "))


def probe(name, addr):
    passed, failed = 0, []
    for case, request, want, rfc in CASES:
        try:
            got = run_case(addr, request, want)
        except OSError as err:
            got = [str(err)]
        if got == want:
            passed += 1
        else:
            failed.append(case)
            print(f"  {name}: FAIL {case!r} (RFC {rfc}): want {want}, got {got}")
    print(f"{name}: {passed}/{len(CASES)} passed")
    return passed, set(failed)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(addr, proc):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(addr, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen within 10 s")


def start_ours(binary):
    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--protocol", "http", "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(("127.0.0.1", port), proc)
    return proc, ("127.0.0.1", port)


def start_nginx(workdir):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        print("nginx: SKIP, not installed (Debian package nginx-light)")
        return None, None
    port = free_port()
    conf = os.path.join(workdir, "nginx.conf")
    temps = " ".join(f"{kind}_temp_path {workdir}/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(conf, "w") as out:
        out.write(f"""daemon off; master_process off; worker_processes 1;
pid {workdir}/nginx.pid; error_log {workdir}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; {temps}
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "Hello, world!\\n"; }} }} }}
""")
    proc = subprocess.Popen([nginx, "-p", workdir, "-e", f"{workdir}/error.log", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(("127.0.0.1", port), proc)
    return proc, ("127.0.0.1", port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addr", action="append", default=[])
    parser.add_argument("--binary")
    parser.add_argument("--nginx", action="store_true")
    parser.add_argument("--require-all", action="append", default=[])
    parser.add_argument("--require-superset", action="store_true")
    args = parser.parse_args()
    print(f"{len(CASES)} cases")
    results, procs = {}, []
    with tempfile.TemporaryDirectory(prefix="http-probe-") as workdir:
        try:
            for addr in args.addr:
                host, _, port = addr.rpartition(":")
                results[addr] = probe(addr, (host, int(port)))
            if args.binary:
                proc, addr = start_ours(args.binary)
                procs.append(proc)
                results["ours"] = probe("ours", addr)
            if args.nginx:
                proc, addr = start_nginx(workdir)
                if proc:
                    procs.append(proc)
                    results["nginx"] = probe("nginx", addr)
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
    ok = True
    for name in args.require_all:
        if name not in results or results[name][1]:
            print(f"{name} does not pass every case")
            ok = False
    if args.require_superset and "ours" in results and "nginx" in results:
        worse = results["ours"][1] - results["nginx"][1]
        if worse:
            print(f"ours fails where nginx passes: {sorted(worse)}")
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
