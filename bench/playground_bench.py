"""
The playground's HTTP side: requests per second for the page, its script,
C{GET /bgpy/state} and C{POST /bgpy/exec} on a real C{twistd -n bridge}
(demo app), beside a bare twisted.web C{Site} serving the same page bytes
from a L{twisted.web.static.Data} (the ceiling for a static answer).

One keep-alive client (requests.Session), sequential requests, so the
figures are latency-bound: what one browser tab sees.

    .venv/bin/python bench/playground_bench.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import requests

from twistbridge.playground import read_asset
from twistbridge.testing import BridgeProcess, wait_for

BARE = r"""
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data
from twistbridge.playground import read_asset

root = Resource()
root.putChild(b"", Data(read_asset("index.html"), "text/html; charset=utf-8"))
port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


def rate(session: requests.Session, method: str, url: str, n: int, **kw) -> float:
    """Requests per second for C{n} sequential requests (each must be 200)."""
    for _ in range(20):  # warm up the connection and the code paths
        session.request(method, url, **kw)
    start = time.perf_counter()
    for _ in range(n):
        response = session.request(method, url, **kw)
        if response.status_code != 200:
            raise SystemExit(f"{method} {url}: {response.status_code} {response.text}")
    return n / (time.perf_counter() - start)


def main() -> None:
    """Run both servers and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=2000)
    n = parser.parse_args().requests

    bare = subprocess.Popen([sys.executable, "-c", BARE], stdout=subprocess.PIPE)
    try:
        line = bare.stdout.readline() if bare.stdout else b""
        bare_url = f"http://127.0.0.1:{int(line)}/"
        with BridgeProcess(["--igor-port", "none"]) as server, requests.Session() as s:
            wait_for(lambda: s.get(server.url("/health")).status_code == 200, 10)
            exec_args = {"command": "increase", "value_change": 1}
            rows = [
                ("GET / (bare twisted.web Data)", rate(s, "GET", bare_url, n)),
                ("GET / (twistbridge)", rate(s, "GET", server.url("/"), n)),
                (
                    "GET /playground/app.js",
                    rate(s, "GET", server.url("/playground/app.js"), n),
                ),
                ("GET /bgpy/state", rate(s, "GET", server.url("/bgpy/state"), n)),
                (
                    "POST /bgpy/exec",
                    rate(s, "POST", server.url("/bgpy/exec"), n, json=exec_args),
                ),
            ]
    finally:
        bare.terminate()
        bare.wait()
    size = sum(
        len(read_asset(name))
        for name in ("index.html", "app.js", "style.css", "favicon.svg")
    )
    print(f"{n} sequential keep-alive requests each, {os.cpu_count()} cores")
    print(f"page weight: {size} bytes in 4 files, nothing from other sites")
    for name, value in rows:
        print(f"{name:34} {value:8.0f} req/s")


if __name__ == "__main__":
    main()
