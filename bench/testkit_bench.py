"""
Test-kit benchmark: what a typical user test costs in memory
(L{twistbridge.testing.BridgeTestClient}) and through a real C{twistd -n
bridge} (L{twistbridge.testing.BridgeProcess}).

    .venv/bin/python bench/testkit_bench.py [--memory-runs N] [--process-runs N]

The app is the one of the manual's "Testing your app" page
(docs/examples/testing_app.py).  A typical test does, in order: one izzati
upload (a 10 KB file), one JSON-RPC call, one Igor stream (C{echo}), one
bgpy C{EXEC} awaiting its response.  Two figures each way, medians:

1. the whole test, with a fresh server: in memory, building the client,
   the four steps, closing it; for real, starting C{twistd}, the four steps
   over real sockets with the real client libraries (requests,
   websocket-client, the JSON-lines client), stopping it;
2. the four steps alone, against a server already running (what a test
   costs when its module shares one server).

The ratio is real time over in-memory time; the goal is at least 50 for the
whole test.  The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
sys.path.insert(0, str(EXAMPLES))

import requests  # noqa: E402
import testing_app  # noqa: E402
import websocket  # noqa: E402

from twistbridge.testing import (  # noqa: E402
    BridgeProcess,
    BridgeTestClient,
    JsonLinesClient,
)

FILE = b"x" * 10_000


def steps_in_memory(client: BridgeTestClient) -> None:
    """The four steps of the typical test, in memory, checked."""
    upload = client.upload(text={"title": "t"}, files={"file": ("f.bin", FILE)})
    assert upload.json() == {"title": "t", "sizes": [10_000]}, upload
    assert client.rpc("add", 2, 3) == 5
    ws = client.igor()
    assert ws.call("echo", "hi")[0] == {"streamId": "1", "data": "hi"}
    ws.close()
    bgpy = client.bgpy()
    answers = bgpy.call("EXEC", add=1, await_response=True)
    assert answers[-1]["type"] == "OK", answers
    bgpy.close()


def steps_over_sockets(server: BridgeProcess) -> None:
    """The same four steps over real sockets, with the real clients, checked."""
    with requests.Session() as http:
        upload = http.post(
            server.url("/"), data={"title": "t"}, files={"file": ("f.bin", FILE)}
        )
        assert upload.json() == {"title": "t", "sizes": [10_000]}, upload.text
        rpc = http.post(
            server.url("/rpc"),
            json={"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1},
        )
        assert rpc.json()["result"] == 5
    ws = websocket.create_connection(server.url("/ws", scheme="ws"), timeout=10)
    try:
        ws.send(json.dumps({"streamId": "1", "action": "echo", "data": "hi"}))
        assert json.loads(ws.recv()) == {"streamId": "1", "data": "hi"}
        assert json.loads(ws.recv()) == {"streamId": "1", "close": True}
    finally:
        ws.close()
    with JsonLinesClient(server.addresses["bgpy"]) as bgpy:
        assert bgpy.call("EXEC", add=1, await_response=True)["type"] == "OK"
        assert bgpy.line()["type"] == "OK"


def start_server() -> BridgeProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(EXAMPLES), env.get("PYTHONPATH")])
    )
    return BridgeProcess(
        ["--app", "testing_app:bridge"], env=env, cwd=str(EXAMPLES)
    ).start()


def timed(func, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-runs", type=int, default=50)
    parser.add_argument("--process-runs", type=int, default=5)
    args = parser.parse_args()

    def whole_in_memory() -> None:
        with BridgeTestClient(testing_app.bridge) as client:
            steps_in_memory(client)

    def whole_over_sockets() -> None:
        server = start_server()
        try:
            steps_over_sockets(server)
        finally:
            server.stop()

    whole_in_memory()  # first-use imports, outside the figures
    memory_whole = timed(whole_in_memory, args.memory_runs)
    real_whole = timed(whole_over_sockets, args.process_runs)

    client = BridgeTestClient(testing_app.bridge)
    memory_steps = timed(lambda: steps_in_memory(client), args.memory_runs)
    client.close()
    server = start_server()
    try:
        steps_over_sockets(server)
        real_steps = timed(lambda: steps_over_sockets(server), args.memory_runs)
    finally:
        server.stop()

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'typical test (medians)':<38}{'in memory':>12}{'BridgeProcess':>15}{'ratio':>9}"
    )
    for label, mem, real in [
        ("whole test, fresh server", memory_whole, real_whole),
        ("the four steps, server running", memory_steps, real_steps),
    ]:
        print(
            f"{label:<38}{mem * 1000:>10.2f}ms{real * 1000:>13.2f}ms{real / mem:>8.1f}x"
        )


if __name__ == "__main__":
    main()
