#!/usr/bin/env python3
"""Scenarios read by h11's strict HTTP/1.1 parser (PyPI `h11`): keep-alive, pipelining,
a chunked request, HEAD, and error replies. Usage: h11_scenarios.py HOST:PORT. Prints
each scenario; exit 1 on the first failure. Every read is bounded by a 5 s timeout."""

import socket
import sys

import h11


def exchange(addr, requests, head=False):
    """Send `requests` (h11 events, several requests pipelined) on one connection and
    read the responses with h11; the list of (status, body, headers)."""
    client = h11.Connection(h11.CLIENT)
    sock = socket.create_connection(addr, timeout=5)
    wire = b""
    for event in requests:
        wire += client.send(event)
        if isinstance(event, h11.EndOfMessage) and event is not requests[-1]:
            # h11 refuses a second request before the first response; pipeline by hand
            # with a fresh client state for each request's bytes.
            client = h11.Connection(h11.CLIENT)
    sock.sendall(wire)
    reader = h11.Connection(h11.CLIENT)
    responses = []
    count = sum(isinstance(e, h11.Request) for e in requests)
    methods = [e.method for e in requests if isinstance(e, h11.Request)]
    while len(responses) < count:
        # h11 needs to know the request to frame its response (HEAD has no body).
        reader.send(h11.Request(method=methods[len(responses)], target="/", headers=[("Host", "h11")]))
        reader.send(h11.EndOfMessage())
        status, body, headers = None, b"", None
        while True:
            event = reader.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                reader.receive_data(data)
                if not data and status is None:
                    raise AssertionError("closed before a response")
                continue
            if isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                break
        responses.append((status, body, headers))
        if reader.our_state is h11.MUST_CLOSE or reader.their_state is h11.MUST_CLOSE:
            break
        reader.start_next_cycle()
    sock.close()
    return responses


def get(target="/", method="GET", extra=()):
    return [h11.Request(method=method, target=target, headers=[("Host", "h11"), *extra]), h11.EndOfMessage()]


def check(name, cond, detail):
    print(f"{'ok  ' if cond else 'FAIL'} {name}: {detail}")
    if not cond:
        sys.exit(1)


def main():
    host, _, port = sys.argv[1].rpartition(":")
    addr = (host, int(port))
    got = exchange(addr, get() + get("/b") + get("/c"))
    check("keep-alive and pipelining", [s for s, _, _ in got] == [200] * 3 and all(b == b"Hello, world!\n" for _, b, _ in got), got)
    check("Date on every reply", all(b"date" in h for _, _, h in got), got[0][2])
    got = exchange(addr, get(method="HEAD") + get())
    check("HEAD then GET", [(s, b) for s, b, _ in got] == [(200, b""), (200, b"Hello, world!\n")], got)
    chunked = [h11.Request(method="POST", target="/", headers=[("Host", "h11"), ("Transfer-Encoding", "chunked")]),
               h11.Data(data=b"hello "), h11.Data(data=b"world"), h11.EndOfMessage()]
    got = exchange(addr, chunked + get())
    check("chunked request", [s for s, _, _ in got] == [200, 200], got)
    got = exchange(addr, [h11.Request(method="GET", target="/", headers=[("Host", "a b")]), h11.EndOfMessage()])
    check("400 read whole", got[0][0] == 400 and got[0][2].get(b"connection") == b"close", got)
    got = exchange(addr, [h11.Request(method="GET", target="/" + "a" * 10240, headers=[("Host", "h11")]), h11.EndOfMessage()])
    check("414 read whole", got[0][0] == 414, got)


if __name__ == "__main__":
    main()
