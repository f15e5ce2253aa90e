#!/usr/bin/env python3
"""Head-to-head: tcp-reactor against the servers people use, cell by cell.

Run it through `benches/peers.sh` (which can install the peers first). Every cell pits one of
our servers against its peer under the same load generator, one worker each, on loopback:

  resp-p1     `serve --protocol resp` vs redis-server, redis-benchmark -c 50 -t ping,set,get -P 1
  resp-p16    the same with -P 16
  http        `serve --protocol http` vs nginx (return 200), wrk -t1 -c100
  https       the same over TLS 1.3, one P-256 certificate made for the run, for both
  proxy-*     `serve --protocol proxy` vs HAProxy (mode tcp, nbthread 1) in front of our
              echo server: `tcp-reactor load`, 64 B and 4 KiB messages, 100 and 1,000 pairs
  echo        `serve` (echo) vs a tokio current_thread echo server (the bench crate's),
              `tcp-reactor load -c 1000 -s 64`

Cores: the server under test runs alone on CPU 0; the load generator (and the proxy's
upstream) on CPU 1 (taskset). Each cell runs ROUNDS rounds, each round ours then the peer
(the order alternating from round to round), each run on a freshly started server. A round
gives two paired ratios, ours/peer of the request rate and of the server's CPU time per
request (utime + stime from /proc/PID/stat, threads and child processes included, over the
load's run). The table shows each ratio's median over the rounds, with min-max: a single run
on a shared machine swings by a quarter, alternated medians do not.

After the rounds, one more run per side is made under `perf stat -e raw_syscalls:sys_enter`
(attached to the server by pid, and wrapping the load generator) for syscalls per request on
both sides; `--profile` breaks those down by syscall and adds context switches. Those runs are
not timed: counting slows both sides.

`--breakdown` adds one more run per side under `perf record` (the server only, by pid), and
splits the server's CPU per request by where the samples fell: user space, epoll, scheduling
(sleeping and waking), syscall entry and exit, and the rest of the kernel (the TCP path).

`--idle` adds the memory of idle connections: the server's resident memory (VmRSS, children
included) before and after IDLE clients each exchange one message and stay silent.

Output: a markdown table on stdout, also appended to target/bench-report/report.md, and
every run as JSON in target/bench-report/peers-TIME.json.
"""
import argparse
import json
import os
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOAD_CPU = "0", "1"
# Rate at least this much higher, CPU per request at least this much lower: a lead.
RATE_GOAL, CPU_GOAL = 1.05, 0.85
PROFILE_SYSCALLS = [
    "read", "write", "recvfrom", "sendto", "readv", "writev", "recvmsg", "sendmsg",
    "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "splice", "accept4",
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------------

def children(pid):
    """Direct children of pid (nginx's or haproxy's workers, when they have any)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def cpu_split(pid):
    """utime and stime of pid and its children so far, in clock ticks (threads included)."""
    user = system = 0
    for p in [pid] + children(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])
        except OSError:
            pass
    return user, system


def cpu_ticks(pid):
    """utime + stime of pid and its children so far, in clock ticks."""
    return sum(cpu_split(pid))


def rss_kib(pid):
    total = 0
    for p in [pid] + children(pid):
        with open(f"/proc/{p}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total


def machine_ticks():
    """Busy and total ticks of all CPUs together (/proc/stat's cpu line)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy, busy + v[3] + v[4] + v[7]


def wait_port(port, proc, what, limit=10.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"peers: {what} exited at start-up (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"peers: {what} does not listen on port {port} after {limit:.0f} s")


class Server:
    """A server pinned to `cpu`, stopped (SIGTERM, then SIGKILL) when the block ends."""

    def __init__(self, what, cmd, port, cpu=SERVER_CPU, work=None):
        self.what, self.port = what, port
        out = open(os.path.join(work, f"{what.split()[0]}.log"), "ab") if work else subprocess.DEVNULL
        env = dict(os.environ, RUST_LOG="error")
        self.proc = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL, env=env)
        wait_port(port, self.proc, what)

    @property
    def pid(self):
        return self.proc.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.3)  # let the kernel free the port's sockets


# ---- load generators -------------------------------------------------------------------

def parse_redis_benchmark(out, per_test):
    """Requests and their rate over every test of a `--csv` report of per_test requests each."""
    requests, seconds = 0, 0.0
    for line in out.splitlines():
        cols = [c.strip('"') for c in line.split(",")]
        if len(cols) < 2 or cols[0] == "test":
            continue
        requests += per_test
        seconds += per_test / float(cols[1])
    return requests, requests / seconds if seconds else 0.0, 0


def parse_wrk(out, _):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = (1 if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)
    return int(m.group(1)), float(rate.group(1)), bad


def parse_load(out, _):
    report = json.loads(out)
    return report["messages"], report["messages_per_sec"], sum(report["errors"].values())


# ---- cells -----------------------------------------------------------------------------

class Cell:
    """One comparison: how to start each side, the load, how to read the load's report."""

    def __init__(self, name, load_desc, ours, peer, peer_name, load, parse, requests=None,
                 upstream=False, rate_goal=RATE_GOAL, cpu_goal=CPU_GOAL):
        self.name, self.load_desc = name, load_desc
        self.ours, self.peer, self.peer_name = ours, peer, peer_name
        self.load, self.parse, self.requests, self.upstream = load, parse, requests, upstream
        self.rate_goal, self.cpu_goal = rate_goal, cpu_goal


def nginx_conf(work, port, tls):
    d = os.path.join(work, f"nginx-{port}")
    os.makedirs(d, exist_ok=True)
    listen = f"listen 127.0.0.1:{port};"
    if tls:
        listen = (f"listen 127.0.0.1:{port} ssl; ssl_certificate {work}/cert.pem; "
                  f"ssl_certificate_key {work}/key.pem; ssl_protocols TLSv1.3;")
    conf = f"""worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16000; }}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    server {{
        {listen}
        location / {{ default_type text/plain; return 200 "Hello, world!\\n"; }}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def haproxy_conf(work, port, upstream):
    path = os.path.join(work, f"haproxy-{port}.cfg")
    with open(path, "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend proxy
    bind 127.0.0.1:{port}
    default_backend upstream
backend upstream
    server echo 127.0.0.1:{upstream}
""")
    return path


def cells(args, work):
    ours, tokio = args.ours, args.tokio
    d = str(args.duration)
    base = args.port_base
    redis = lambda p: ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--daemonize", "no", "--maxclients", "16000"]

    def rb(pipeline, n):
        def load(port):
            return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n",
                    str(n), "-t", "ping,set,get", "-P", str(pipeline), "--csv"]
        return load

    wrk = lambda scheme: lambda port: ["wrk", "-t1", "-c100", f"-d{d}s",
                                       f"{scheme}://127.0.0.1:{port}/"]
    tls = ["--tls-cert", f"{work}/cert.pem", "--tls-key", f"{work}/key.pem"]
    load = lambda conns, size: lambda port: [ours, "load", "--addr", f"127.0.0.1:{port}", "-c",
                                             str(conns), "-s", str(size), "-d", d, "-t", "1",
                                             "--json", "--quiet"]
    serve = lambda port, *more: [ours, "serve", "--addr", f"127.0.0.1:{port}",
                                 "--max-connections", "20000", *more]
    upstream = base + 99
    out = [
        Cell("resp-p1", "redis-benchmark -c 50 -t ping,set,get -P 1",
             lambda p: serve(p, "--protocol", "resp"), redis, "redis-server " + version("redis"),
             rb(1, args.resp_requests), parse_redis_benchmark, requests=args.resp_requests),
        Cell("resp-p16", "redis-benchmark -c 50 -t ping,set,get -P 16",
             lambda p: serve(p, "--protocol", "resp"), redis, "redis-server " + version("redis"),
             rb(16, args.resp_requests * 10), parse_redis_benchmark,
             requests=args.resp_requests * 10),
        Cell("http", "wrk -t1 -c100 GET /",
             lambda p: serve(p, "--protocol", "http"),
             lambda p: ["nginx", "-c", nginx_conf(work, p, False)], "nginx " + version("nginx"),
             wrk("http"), parse_wrk),
        Cell("https", "wrk -t1 -c100 GET / over TLS 1.3",
             lambda p: serve(p, "--protocol", "http", *tls),
             lambda p: ["nginx", "-c", nginx_conf(work, p, True)], "nginx " + version("nginx"),
             wrk("https"), parse_wrk),
    ]
    for size, conns in [(64, 100), (4096, 100), (64, 1000), (4096, 1000)]:
        label = "64B" if size == 64 else "4KiB"
        out.append(Cell(
            f"proxy-{label}-{conns}", f"tcp-reactor load -c {conns} -s {size}, via the proxy",
            lambda p: serve(p, "--protocol", "proxy", "--upstream", f"127.0.0.1:{upstream}"),
            lambda p: ["haproxy", "-db", "-f", haproxy_conf(work, p, upstream)],
            "HAProxy " + version("haproxy"), load(conns, size), parse_load, upstream=upstream))
    out.append(Cell("echo", "tcp-reactor load -c 1000 -s 64",
                    lambda p: serve(p), lambda p: [tokio, "__tokio-echo", "current", f"127.0.0.1:{p}"],
                    "tokio current_thread", load(1000, 64), parse_load, rate_goal=1.0, cpu_goal=1.0))
    return out


def version(tool):
    try:
        if tool == "redis":
            return re.search(r"v=(\S+)", subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout).group(1)
        if tool == "nginx":
            return subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
        if tool == "haproxy":
            return subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split()[2]
    except (OSError, AttributeError, IndexError):
        pass
    return "?"


# ---- one run ---------------------------------------------------------------------------

def run_load(cmd, timeout):
    done = subprocess.run(["taskset", "-c", LOAD_CPU] + cmd, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0 and not done.stdout:
        sys.exit(f"peers: {' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def timed_run(cell, side, args, work, upstream_pid):
    """Start one side, run the load once; rate, CPU per request and the noise."""
    port = args.port_base + (0 if side == "ours" else 1)
    cmd = cell.ours(port) if side == "ours" else cell.peer(port)
    with Server(side if side == "ours" else cell.peer_name, cmd, port, work=work) as server:
        time.sleep(0.2)
        (user0, sys0), u0 = cpu_split(server.pid), cpu_ticks(upstream_pid) if upstream_pid else 0
        l0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        b0, t0 = machine_ticks()
        w0 = time.monotonic()
        out = run_load(cell.load(port), args.duration * 4 + 60)
        wall = time.monotonic() - w0
        b1, t1 = machine_ticks()
        l1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        (user1, sys1), u1 = cpu_split(server.pid), cpu_ticks(upstream_pid) if upstream_pid else 0
    requests, rate, errors = cell.parse(out, cell.requests)
    s0, s1 = user0 + sys0, user1 + sys1
    load_ticks = ((l1.ru_utime + l1.ru_stime) - (l0.ru_utime + l0.ru_stime)) * HZ
    others = max(0.0, (b1 - b0) - (s1 - s0) - (u1 - u0) - load_ticks) * 100 / max(1, t1 - t0)
    return {
        "side": side, "requests": requests, "rate": rate, "errors": errors,
        "cpu_us": (s1 - s0) / HZ * 1e6 / requests if requests else float("nan"),
        "user_us": (user1 - user0) / HZ * 1e6 / requests if requests else float("nan"),
        "others_pct": round(others, 1),
        # The load generator's CPU over the run, % of its one core: near 100 means the rate
        # is the load generator's, whatever the server does.
        "load_pct": round(load_ticks / HZ / wall * 100, 1),
        "server_pct": round((s1 - s0) / HZ / wall * 100, 1),
    }


def perf_events(profile):
    events = ["raw_syscalls:sys_enter"]
    if profile:
        events += [f"syscalls:sys_enter_{s}" for s in PROFILE_SYSCALLS] + ["context-switches"]
    return ",".join(events)


def read_perf(path):
    counts = {}
    with open(path) as f:
        for line in f:
            cols = line.strip().split(",")
            if len(cols) < 3 or line.startswith("#"):
                continue
            name = cols[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all")
            try:
                counts[name] = int(cols[0])
            except ValueError:
                pass
    return counts


def counted_run(cell, side, args, work):
    """One run with perf counting the syscalls of the server and of the load generator."""
    port = args.port_base + (0 if side == "ours" else 1)
    cmd = cell.ours(port) if side == "ours" else cell.peer(port)
    events = perf_events(args.profile)
    srv_out, load_out = os.path.join(work, "perf-server"), os.path.join(work, "perf-load")
    with Server(side if side == "ours" else cell.peer_name, cmd, port, work=work) as server:
        time.sleep(0.2)
        pids = ",".join(str(p) for p in [server.pid] + children(server.pid))
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", events, "-o", srv_out, "-p", pids],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        out = run_load(["perf", "stat", "-x,", "-e", events, "-o", load_out, "--"] + cell.load(port),
                       args.duration * 4 + 60)
        perf.send_signal(signal.SIGINT)
        perf.wait(10)
    requests = cell.parse(out, cell.requests)[0]
    per = lambda counts: {k: v / requests for k, v in counts.items()} if requests else {}
    return {"side": side, "requests": requests, "server": per(read_perf(srv_out)),
            "load": per(read_perf(load_out))}


# Kernel symbols by what they do, for --breakdown; the first match wins, the rest is the
# TCP/IP path and everything else in the kernel.
BUCKETS = [
    ("epoll", re.compile(r"^(ep_|__ep_|do_epoll|__x64_sys_epoll|epoll_|ep_poll)")),
    ("scheduling", re.compile(
        r"(schedule|finish_task_switch|__switch_to|switch_mm|pick_next|pick_task|put_prev|"
        r"set_next|dequeue_|enqueue_|update_curr|update_load|update_cfs|try_to_wake_up|ttwu|"
        r"select_task_rq|psi_|hrtimer|cpuidle|do_idle|newidle|load_balance|reweight|"
        r"account_|cpuacct|__wake_up|wake_up|autoremove_wake|default_wake|prepare_to_wait|"
        r"raw_spin_rq|sched_|task_tick|native_sched|record_times|update_rq|rb_erase|"
        r"rb_insert|avg_vruntime|place_entity|check_preempt|resched|_raw_spin_unlock_irq)")),
    ("syscall entry/exit", re.compile(
        r"^(entry_SYSCALL|do_syscall_64|syscall_exit|syscall_return|__x64_sys_|x64_sys_call|"
        r"exit_to_user|fpregs_|restore_fpregs|switch_fpu|srso_|__fdget|fdget|fput|__fget|"
        r"__rseq|rseq_|clear_bhb|audit_|__audit|__secure_computing)")),
]


def breakdown_run(cell, side, args, work):
    """One run with `perf record` on the server: its CPU per request by bucket (µs)."""
    port = args.port_base + (0 if side == "ours" else 1)
    cmd = cell.ours(port) if side == "ours" else cell.peer(port)
    data = os.path.join(work, f"perf-{side}.data")
    with Server(side if side == "ours" else cell.peer_name, cmd, port, work=work) as server:
        time.sleep(0.2)
        pids = [server.pid] + children(server.pid)
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "2999", "-o", data, "-p",
                                 ",".join(map(str, pids))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        t0 = cpu_ticks(server.pid)
        out = run_load(cell.load(port), args.duration * 4 + 60)
        t1 = cpu_ticks(server.pid)
        perf.send_signal(signal.SIGINT)
        perf.wait(30)
    requests = cell.parse(out, cell.requests)[0]
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "-q", "-n", "--no-children",
                             "--sort", "sym"], capture_output=True, text=True).stdout
    samples = {name: 0 for name in ["user space"] + [b for b, _ in BUCKETS] + ["rest of kernel"]}
    for line in report.splitlines():
        # "  12.34%  1234  [k] symbol" or "[.] symbol"
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        count, where, sym = int(m.group(1)), m.group(2), m.group(3)
        if where != "k":
            samples["user space"] += count
            continue
        bucket = next((b for b, rx in BUCKETS if rx.search(sym)), "rest of kernel")
        samples[bucket] += count
    total = sum(samples.values())
    cpu_us = (t1 - t0) / HZ * 1e6 / requests if requests else float("nan")
    return {"side": side, "requests": requests, "cpu_us": cpu_us,
            "buckets": {k: cpu_us * v / total if total else float("nan")
                        for k, v in samples.items()}}


# ---- idle memory -----------------------------------------------------------------------

def idle_bytes(host_port, pid, n, tls_ca=None, ping=b"x"):
    """Bytes of server RSS per idle connection: n clients exchange one message and wait."""
    ctx = None
    if tls_ca:
        ctx = ssl.create_default_context(cafile=tls_ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3

    def connect():
        s = socket.create_connection(host_port, timeout=10)
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(ping)
        if not s.recv(4096):
            sys.exit("peers: an idle client was not served")
        return s

    warm = [connect() for _ in range(20)]
    time.sleep(0.5)
    before = rss_kib(pid)
    held = [connect() for _ in range(n)]
    time.sleep(1.0)
    after = rss_kib(pid)
    for s in warm + held:
        s.close()
    return round((after - before) * 1024 / n)


def idle_section(args, work, by_name):
    rows = []
    n = args.idle
    port = args.port_base + 50
    http_ping = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    cases = [
        ("echo", by_name["echo"], None, b"x"),
        ("https", by_name["https"], f"{work}/cert.pem", http_ping),
        ("proxy pair", by_name["proxy-64B-100"], None, b"x"),
    ]
    for what, cell, ca, ping in cases:
        row = {"what": what, "peer_name": cell.peer_name}
        up = start_upstream(args, work) if cell.upstream else None
        try:
            for side in ("ours", "peer"):
                cmd = cell.ours(port) if side == "ours" else cell.peer(port)
                with Server(side, cmd, port, work=work) as server:
                    row[side] = idle_bytes(("127.0.0.1", port), server.pid, n, ca, ping)
        finally:
            if up:
                up.__exit__()
        rows.append(row)
        log(f"idle {what}: ours {row['ours']} B, {cell.peer_name} {row['peer']} B")
    return rows


# ---- the whole ---------------------------------------------------------------------------

def start_upstream(args, work):
    port = args.port_base + 99
    return Server("upstream", [args.ours, "serve", "--addr", f"127.0.0.1:{port}",
                               "--max-connections", "20000"], port, cpu=LOAD_CPU, work=work)


def spread(values):
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(values), min(values), max(values)


def run_cell(cell, args, work):
    up = start_upstream(args, work) if cell.upstream else None
    runs, counted, broken = [], [], []
    try:
        for r in range(args.rounds):
            order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
            pair = {}
            for side in order:
                pair[side] = timed_run(cell, side, args, work, up.pid if up else None)
                log(f"{cell.name} round {r + 1} {side}: {pair[side]['rate']:.0f} req/s, "
                    f"{pair[side]['cpu_us']:.2f} us/req, others {pair[side]['others_pct']}%")
            runs.append(pair)
        if not args.no_syscalls:
            for side in ("ours", "peer"):
                counted.append(counted_run(cell, side, args, work))
        if args.breakdown:
            for side in ("ours", "peer"):
                broken.append(breakdown_run(cell, side, args, work))
    finally:
        if up:
            up.__exit__()
    return {"cell": cell.name, "load": cell.load_desc, "peer": cell.peer_name, "runs": runs,
            "syscalls": counted, "breakdown": broken, "rate_goal": cell.rate_goal, "cpu_goal": cell.cpu_goal}


def summarize(result):
    runs = result["runs"]
    rate = spread([p["ours"]["rate"] / p["peer"]["rate"] for p in runs if p["peer"]["rate"]])
    cpu = spread([p["ours"]["cpu_us"] / p["peer"]["cpu_us"] for p in runs if p["peer"]["cpu_us"]])
    med = lambda side, key: statistics.median(p[side][key] for p in runs)
    sc = {c["side"]: c for c in result["syscalls"]}
    sys_of = lambda side, where: sc[side][where].get("all", float("nan")) if side in sc else float("nan")
    errors = sum(p[s]["errors"] for p in runs for s in ("ours", "peer"))
    lead = rate[0] >= result["rate_goal"] and cpu[0] <= result["cpu_goal"]
    return {
        "rate": rate, "cpu": cpu, "ours_rate": med("ours", "rate"), "peer_rate": med("peer", "rate"),
        "ours_cpu": med("ours", "cpu_us"), "peer_cpu": med("peer", "cpu_us"),
        "ours_user": med("ours", "user_us"), "peer_user": med("peer", "user_us"),
        "sys": (sys_of("ours", "server"), sys_of("peer", "server"),
                sys_of("ours", "load"), sys_of("peer", "load")),
        "load_pct": (med("ours", "load_pct"), med("peer", "load_pct")),
        "server_pct": (med("ours", "server_pct"), med("peer", "server_pct")),
        "others": statistics.median(p[s]["others_pct"] for p in runs for s in ("ours", "peer")),
        "errors": errors, "lead": lead,
    }


def table(results, args, idle):
    lines = [
        f"### Head-to-head, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"One worker each; server on CPU {SERVER_CPU}, load generator (and the proxy's upstream, "
        f"our echo server) on CPU {LOAD_CPU}. {args.rounds} alternated rounds per cell, "
        f"{args.duration} s per wrk/load run. Ratios are ours / peer, median of the rounds "
        f"(min-max). Goal: rate ≥ {RATE_GOAL}, CPU ≤ {CPU_GOAL} (echo vs tokio: 1.0 and 1.0).",
        "",
        "| cell | load | peer | req/s ours / peer | rate ratio | CPU µs/req ours / peer | CPU ratio "
        "| of which user space | busy % server ours / peer | busy % load ours / peer "
        "| syscalls/req server ours / peer | syscalls/req load ours / peer | others % | lead |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        s = r["summary"]
        f2 = lambda v: f"{v:.2f}"
        lines.append(
            f"| {r['cell']} | {r['load']} | {r['peer']} | {s['ours_rate']:,.0f} / {s['peer_rate']:,.0f} "
            f"| **{s['rate'][0]:.2f}** ({s['rate'][1]:.2f}–{s['rate'][2]:.2f}) "
            f"| {s['ours_cpu']:.2f} / {s['peer_cpu']:.2f} "
            f"| **{s['cpu'][0]:.2f}** ({s['cpu'][1]:.2f}–{s['cpu'][2]:.2f}) "
            f"| {s['ours_user']:.2f} / {s['peer_user']:.2f} "
            f"| {s['server_pct'][0]:.0f} / {s['server_pct'][1]:.0f} "
            f"| {s['load_pct'][0]:.0f} / {s['load_pct'][1]:.0f} "
            f"| {f2(s['sys'][0])} / {f2(s['sys'][1])} | {f2(s['sys'][2])} / {f2(s['sys'][3])} "
            f"| {s['others']:.0f} | {'yes' if s['lead'] else 'no'}"
            f"{' (errors: ' + str(s['errors']) + ')' if s['errors'] else ''} |")
    if args.profile:
        lines += ["", "Syscalls (and context switches) per request, server / load generator:", ""]
        for r in results:
            for c in r["syscalls"]:
                parts = [f"{k} {c['server'].get(k, 0):.2f}/{c['load'].get(k, 0):.2f}"
                         for k in ["all"] + PROFILE_SYSCALLS + ["context-switches"]
                         if c["server"].get(k, 0) >= 0.005 or c["load"].get(k, 0) >= 0.005]
                who = "ours" if c["side"] == "ours" else r["peer"]
                lines.append(f"- {r['cell']}, {who}: " + ", ".join(parts))
    if args.breakdown:
        names = ["user space"] + [b for b, _ in BUCKETS] + ["rest of kernel"]
        lines += ["", "Server CPU per request by where it went, µs (one `perf record` run per "
                  "side; ours / peer):", "",
                  "| cell | CPU µs/req | " + " | ".join(names) + " |",
                  "|---|---:|" + "---:|" * len(names)]
        for r in results:
            by = {b["side"]: b for b in r.get("breakdown", [])}
            if set(by) != {"ours", "peer"}:
                continue
            o, q = by["ours"], by["peer"]
            cells_ = " | ".join(f"{o['buckets'][n]:.2f} / {q['buckets'][n]:.2f}" for n in names)
            lines.append(f"| {r['cell']} | {o['cpu_us']:.2f} / {q['cpu_us']:.2f} | {cells_} |")
    if idle:
        lines += ["", f"Memory per idle connection ({args.idle} clients, one message each, then "
                  "silent; server VmRSS after minus before):", "",
                  "| connection | peer | bytes ours | bytes peer | ratio |", "|---|---|---:|---:|---:|"]
        for row in idle:
            lines.append(f"| {row['what']} | {row['peer_name']} | {row['ours']:,} | {row['peer']:,} "
                         f"| {row['ours'] / row['peer']:.2f} |" if row['peer'] else "")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ours", required=True, help="the tcp-reactor binary (release build)")
    p.add_argument("--tokio", required=True, help="the bench binary that serves tokio echo")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds per cell (5)")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk/load run (5)")
    p.add_argument("--resp-requests", type=int, default=100_000,
                   help="redis-benchmark requests per test at -P 1, ten times that at -P 16")
    p.add_argument("--cells", help="comma-separated cell names (default: all)")
    p.add_argument("--profile", action="store_true", help="syscalls per request by name")
    p.add_argument("--no-syscalls", action="store_true", help="skip the perf-counted runs")
    p.add_argument("--breakdown", action="store_true",
                   help="split server CPU per request by where it went (perf record)")
    p.add_argument("--idle", type=int, default=0, metavar="N",
                   help="also measure memory per idle connection with N clients (e.g. 2000)")
    p.add_argument("--port-base", type=int, default=18480)
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="peers-") as work:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{work}/key.pem",
                        "-out", f"{work}/cert.pem", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost"], check=True,
                       capture_output=True)
        all_cells = cells(args, work)
        by_name = {c.name: c for c in all_cells}
        chosen = all_cells
        if args.cells:
            unknown = [n for n in args.cells.split(",") if n not in by_name]
            if unknown:
                sys.exit(f"peers: unknown cell(s) {unknown}; cells: {', '.join(by_name)}")
            chosen = [by_name[n] for n in args.cells.split(",")]
        results = []
        for cell in chosen:
            result = run_cell(cell, args, work)
            result["summary"] = summarize(result)
            results.append(result)
            log(table([result], argparse.Namespace(**{**vars(args), "profile": False}), []).split("\n")[-1])
        idle = idle_section(args, work, by_name) if args.idle else []
    text = table(results, args, idle)
    print(text)
    out_dir = os.path.join(ROOT, "target", "bench-report")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.md"), "a") as f:
        f.write(text + "\n\n")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with open(os.path.join(out_dir, f"peers-{stamp}.json"), "w") as f:
        json.dump({"results": results, "idle": idle}, f, indent=1, default=str)
    log(f"peers: every run in target/bench-report/peers-{stamp}.json")


if __name__ == "__main__":
    main()
