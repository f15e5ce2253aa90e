"""redis-py (with hiredis when installed) against `tcp-reactor serve --protocol resp`.

Usage: check.py HOST PORT. Exit status 0 when every check passed; 3 when the `redis`
module is missing (the caller skips, saying so). Prints one line per check group.
"""

import sys
import time

try:
    import redis
except ImportError:
    print("redis-py is not installed")
    sys.exit(3)

host, port = sys.argv[1], int(sys.argv[2])
parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python"
print(f"redis-py {redis.__version__}, parser {parser}")
r = redis.Redis(host=host, port=port, socket_timeout=30)

# Start-up: redis-py 5+ may send HELLO; PING, ECHO, SELECT, INFO, DBSIZE, FLUSHALL.
assert r.ping() is True
assert r.echo(b"a b\r\n") == b"a b\r\n"
assert r.flushall() is True
assert r.dbsize() == 0
assert r.execute_command("SELECT", 0) in (True, b"OK")
info = r.info()
assert info["redis_version"] == "7.0.15", info
assert "used_memory" in info and r.info("memory")["maxmemory"] == 0
print("start-up and server commands: ok")

# Strings and counters: incr() sends INCRBY key 1.
assert r.set("k", "v") is True
assert r.get("k") == b"v"
assert r.exists("k", "missing", "k") == 2
assert r.incr("n") == 1
assert r.incr("n", 10) == 11
assert r.decr("n") == 10
assert r.decr("n", 5) == 5
assert r.incrby("n", -7) == -2
assert r.decrby("n", 3) == -5
try:
    r.incr("k")
    raise AssertionError("INCR of a non-integer succeeded")
except redis.ResponseError as err:
    assert "not an integer" in str(err), err
assert r.delete("k", "n", "missing") == 2
assert r.get("k") is None
print("strings and counters: ok")

# SET options and expiry.
assert r.set("k", "1", nx=True) is True
assert r.set("k", "2", nx=True) is None
assert r.set("k", "3", xx=True, get=True) == b"1"
assert r.set("k", "4", ex=100) is True
assert r.ttl("k") == 100
assert 99_000 < r.pttl("k") <= 100_000
assert r.set("k", "5", keepttl=True) is True and r.ttl("k") == 100
assert r.persist("k") is True and r.ttl("k") == -1
assert r.expire("k", 50) is True and r.ttl("k") == 50
assert r.pexpire("k", 100) is True
assert r.ttl("missing") == -2
assert r.set("gone", "x", px=50) is True
time.sleep(0.1)
assert r.get("gone") is None and r.exists("k") == 0
assert r.set("k", "6", exat=int(time.time()) + 200) is True and 198 <= r.ttl("k") <= 200
try:
    r.set("k", "v", ex=0)
    raise AssertionError("EX 0 accepted")
except redis.ResponseError as err:
    assert "invalid expire time" in str(err), err
print("SET options and expiry: ok")

# Binary values: every byte value, CR LF and NUL inside keys and values.
binary = bytes(range(256)) * 4
assert r.set(b"bin\r\n\x00key", binary) is True
assert r.get(b"bin\r\n\x00key") == binary
print("binary keys and values: ok")

# A 4 MiB value (redis's suite "Very big payload"), through serve's default limits.
big = bytes((n * 7) % 251 for n in range(4 << 20))
assert r.set("big", big) is True
assert r.get("big") == big
assert r.delete("big") == 1
print("4 MiB value: ok")

# Pipelines (no MULTI): 10,000 commands in one batch, then 5,000 GETs.
pipe = r.pipeline(transaction=False)
for n in range(5000):
    pipe.set(f"p:{n}", n)
    pipe.incr(f"c:{n % 10}")
replies = pipe.execute()
assert replies[0::2] == [True] * 5000, replies[:4]
counts = replies[1::2]
assert sorted(counts)[-1] == 500 and len(counts) == 5000
pipe = r.pipeline(transaction=False)
for n in range(5000):
    pipe.get(f"p:{n}")
assert pipe.execute() == [str(n).encode() for n in range(5000)]
assert r.dbsize() == 5012  # and the binary key, and k (EXAT)
assert r.flushdb() is True and r.dbsize() == 0
print("pipelines: ok")

# Errors keep the connection.
try:
    r.execute_command("NOSUCH", "a")
    raise AssertionError("unknown command accepted")
except redis.ResponseError as err:
    assert "unknown command" in str(err), err
assert r.ping() is True
print("errors: ok")
print("all checks passed")
