"""
Connection tracking benchmark: what the L{ConnectionTracker} that every
listener is wrapped in (so that shutdown can drain and abort connections)
costs an HTTP request.

    .venv/bin/python bench/tracking_bench.py [--requests N] [--rounds N] [--clients N]

One server process serves the same bridge's C{GET /health} on two ports: the
bridge's L{BridgeSite} as it is (the reference) and the same site wrapped in
a L{ConnectionTracker} (what twistbridge listens with).  The client sends
C{--requests} keep-alive requests per round from C{--clients} threads,
alternating the ports for C{--rounds} rounds, and prints the median
requests per second of each, side by side, and the new-connection rate
(one request per connection).

The machine's load average is printed with the figures: on a shared machine
they move with it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time

SERVER = r"""
import sys
from twisted.internet import reactor
from twistbridge import Bridge
from twistbridge.listeners import ConnectionTracker
from twistbridge.web import BridgeSite

bridge = Bridge(igor_port="none", bgpy_port="none")
plain = reactor.listenTCP(0, BridgeSite(bridge.resource(), bridge.settings), interface="127.0.0.1")
tracked = reactor.listenTCP(0, ConnectionTracker(BridgeSite(bridge.resource(), bridge.settings)), interface="127.0.0.1")
print(plain.getHost().port, tracked.getHost().port, flush=True)
reactor.run()
"""


def keep_alive(port: int, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    conn.close()


def one_per_connection(port: int, count: int) -> None:
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/health")
        conn.getresponse().read()
        conn.close()


def rate(func, port: int, total: int, clients: int) -> float:
    per = total // clients
    threads = [threading.Thread(target=func, args=(port, per)) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * clients / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        plain, tracked = map(int, server.stdout.readline().split())
        results = {}
        for label, func, total in (
            ("keep-alive requests/s", keep_alive, args.requests),
            ("new connections/s", one_per_connection, args.requests // 2),
        ):
            rates = {"plain": [], "tracked": []}
            rate(func, plain, 200, 2)  # warm up
            rate(func, tracked, 200, 2)
            for _ in range(args.rounds):
                rates["plain"].append(rate(func, plain, total, args.clients))
                rates["tracked"].append(rate(func, tracked, total, args.clients))
            results[label] = {k: statistics.median(v) for k, v in rates.items()}
    finally:
        server.terminate()
        server.wait()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'':24} {'BridgeSite':>12} {'+ tracker':>12} {'ratio':>7}")
    for label, r in results.items():
        print(
            f"{label:24} {r['plain']:12.0f} {r['tracked']:12.0f} {r['tracked'] / r['plain']:7.3f}"
        )


if __name__ == "__main__":
    main()
