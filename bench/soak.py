"""
Soak test: all four protocols at once from many clients, for N minutes.

    .venv/bin/python bench/soak.py --minutes 10

Starts `twistd -n bridge --app soak_app:bridge` on ephemeral ports (or uses
--no-server with --http/--igor/--bgpy addresses), then runs in parallel:

- uploads of random files, each answer's sha256 checked;
- Igor echo round trips (every answer checked) and a broadcast counter
  (every client checks it sees no gap and no repeat);
- JSON-RPC batches of `add`/`mul` (every result checked by id);
- bgpy JSON-lines EXECs adding a known amount (the server's counter must
  equal the sum of the acknowledged EXECs);
- a share of malformed and abruptly cut connections on every port.

At the end it prints the report: requests by protocol, errors on
well-formed traffic (must be 0), checks verified, server RSS and open
descriptors after warm-up and at the end, temp files left behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter

import requests
import websocket

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from twistbridge.testing import BridgeProcess, JsonLinesClient  # noqa: E402


class Stats:
    """Thread-safe counters of the run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = Counter()
        self.errors = Counter()
        self.checks = Counter()
        self.samples = []

    def ok(self, protocol, checks=1):
        with self.lock:
            self.requests[protocol] += 1
            self.checks[protocol] += checks

    def error(self, protocol, what):
        with self.lock:
            self.errors[protocol] += 1
            if len(self.samples) < 20:
                self.samples.append(f"{protocol}: {what}")


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), len(os.listdir(f"/proc/{pid}/fd"))


def izzati_worker(stats, base, stop):
    session = requests.Session()
    seq = 0
    while not stop.is_set():
        seq += 1
        payload = os.urandom(random.choice([10, 1000, 100_000, 1_000_000]))
        digest = hashlib.sha256(payload).hexdigest()
        try:
            r = session.post(
                base + "/",
                data={"seq": str(seq)},
                files={"file": (f"f{seq}.bin", payload)},
                timeout=30,
            )
            body = r.json()
            if (
                r.status_code != 200
                or body["files"]
                != [{"filename": f"f{seq}.bin", "size": len(payload), "sha256": digest}]
                or body["seq"] != str(seq)
            ):
                stats.error("izzati", f"{r.status_code} {r.text[:200]}")
            else:
                stats.ok("izzati")
        except Exception as e:
            stats.error("izzati", repr(e))


def igor_echo_worker(stats, url, stop, n):
    try:
        ws = websocket.create_connection(url, timeout=30)
    except Exception as e:
        stats.error("igor", repr(e))
        return
    i = 0
    last_count = None
    try:
        while not stop.is_set():
            i += 1
            sid = f"c{n}-{i}"
            ws.send(json.dumps({"streamId": sid, "action": "echo", "data": {"i": i}}))
            got_data = got_close = False
            while not got_close:
                msg = json.loads(ws.recv())
                if msg.get("streamId") == "counter":
                    value = msg["data"]
                    if last_count is not None and value != last_count + 1:
                        stats.error("igor", f"broadcast gap {last_count} -> {value}")
                    last_count = value
                    with stats.lock:
                        stats.checks["igor-broadcast"] += 1
                    continue
                if msg.get("streamId") != sid:
                    stats.error("igor", f"foreign message {msg}")
                    continue
                if msg.get("data") == {"i": i}:
                    got_data = True
                elif msg.get("close") is True:
                    got_close = True
                else:
                    stats.error("igor", f"unexpected {msg}")
            if got_data:
                stats.ok("igor")
            else:
                stats.error("igor", "closed without data")
    except Exception as e:
        stats.error("igor", repr(e))
    finally:
        ws.close()


def rpc_worker(stats, url, stop):
    session = requests.Session()
    while not stop.is_set():
        calls = []
        expected = {}
        for k in range(20):
            a, b = random.randint(-1000, 1000), random.randint(-1000, 1000)
            method = random.choice(["add", "mul"])
            calls.append(
                {"jsonrpc": "2.0", "method": method, "params": [a, b], "id": k}
            )
            expected[k] = a + b if method == "add" else a * b
        try:
            r = session.post(url, json=calls, timeout=30)
            answers = {a["id"]: a.get("result") for a in r.json()}
            if r.status_code != 200 or answers != expected:
                stats.error("jsonrpc", f"{r.status_code} {r.text[:200]}")
            else:
                stats.ok("jsonrpc", checks=len(calls))
        except Exception as e:
            stats.error("jsonrpc", repr(e))


def bgpy_worker(stats, address, stop, acked):
    try:
        client = JsonLinesClient(address, timeout=30)
    except Exception as e:
        stats.error("bgpy", repr(e))
        return
    try:
        while not stop.is_set():
            n = random.randint(1, 5)
            answer = client.call("EXEC", n=n)
            if answer.get("type") == "OK":
                with stats.lock:
                    acked[0] += n
                stats.ok("bgpy")
            else:
                stats.error("bgpy", f"{answer}")
    except Exception as e:
        stats.error("bgpy", repr(e))
    finally:
        client.close()


def hostile_worker(stats, addresses, stop):
    """Malformed input and cut connections on every port; only counted."""
    http_host, http_port = addresses["http"].rsplit(":", 1)
    while not stop.is_set():
        target = random.choice(
            [
                "http-garbage",
                "http-cut-upload",
                "igor-garbage",
                "bgpy-garbage",
                "rpc-bad-json",
            ]
        )
        try:
            if target == "http-garbage":
                with socket.create_connection(
                    (http_host, int(http_port)), timeout=10
                ) as s:
                    s.sendall(os.urandom(200) + b"\r\n\r\n")
                    s.recv(1024)
            elif target == "http-cut-upload":
                with socket.create_connection(
                    (http_host, int(http_port)), timeout=10
                ) as s:
                    s.sendall(
                        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                        b'Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name="file"; '
                        b'filename="x"\r\n\r\n' + os.urandom(5000)
                    )
            elif target == "igor-garbage":
                host, port = addresses["igor"].rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    s.sendall(os.urandom(300))
            elif target == "bgpy-garbage":
                host, port = addresses["bgpy"].rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    s.sendall(os.urandom(64))
            else:
                requests.post(
                    f"http://{addresses['http']}/rpc", data=b"{not json", timeout=10
                )
            with stats.lock:
                stats.requests["hostile"] += 1
        except OSError:
            with stats.lock:
                stats.requests["hostile"] += 1
        time.sleep(0.05)  # pacing of the hostile share, not synchronisation


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds before the first RSS sample"
    )
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--igor-clients", type=int, default=20)
    parser.add_argument("--rpc-clients", type=int, default=4)
    parser.add_argument("--bgpy-clients", type=int, default=4)
    parser.add_argument("--hostile", type=int, default=2)
    args = parser.parse_args()

    tmpdir = tempfile.mkdtemp(prefix="twistbridge-soak-")
    env = dict(os.environ, TMPDIR=tmpdir, PYTHONPATH=HERE)
    server = BridgeProcess(
        ["--app", "soak_app:bridge", "--shutdown-timeout", "5"], env=env
    ).start()
    pid = server.process.pid
    addresses = server.addresses
    stats = Stats()
    stop = threading.Event()
    acked = [0]
    threads = []
    base = f"http://{addresses['http']}"
    for _ in range(args.uploaders):
        threads.append(threading.Thread(target=izzati_worker, args=(stats, base, stop)))
    for n in range(args.igor_clients):
        url = f"ws://{addresses['http']}/ws" if n % 2 else f"ws://{addresses['igor']}/"
        threads.append(
            threading.Thread(target=igor_echo_worker, args=(stats, url, stop, n))
        )
    for _ in range(args.rpc_clients):
        threads.append(
            threading.Thread(target=rpc_worker, args=(stats, base + "/rpc", stop))
        )
    for _ in range(args.bgpy_clients):
        threads.append(
            threading.Thread(
                target=bgpy_worker, args=(stats, addresses["bgpy"], stop, acked)
            )
        )
    for _ in range(args.hostile):
        threads.append(
            threading.Thread(target=hostile_worker, args=(stats, addresses, stop))
        )
    started = time.monotonic()
    for t in threads:
        t.daemon = True
        t.start()
    duration = args.minutes * 60
    stop.wait(min(args.warmup, duration / 2))
    rss_start, fds_start = proc_status(pid)
    last_report = time.monotonic()
    while time.monotonic() - started < duration:
        stop.wait(5)
        if time.monotonic() - last_report > 60:
            last_report = time.monotonic()
            rss, fds = proc_status(pid)
            print(
                f"[{int(time.monotonic() - started)}s] {dict(stats.requests)} errors={dict(stats.errors)} rss={rss} KiB fds={fds}",
                flush=True,
            )
    stop.set()
    for t in threads:
        t.join(60)
    # Let the server close what the clients closed, then sample (bounded wait).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rss_end, fds_end = proc_status(pid)
        if fds_end <= fds_start:
            break
        time.sleep(0.2)  # polling /proc, bounded by the deadline
    count = bgpy_counter(addresses)
    leftover = os.listdir(tmpdir)
    status = server.stop()
    growth = (rss_end - rss_start) / rss_start * 100
    report = {
        "minutes": args.minutes,
        "requests": dict(stats.requests),
        "errors": dict(stats.errors),
        "error_samples": stats.samples,
        "checks": dict(stats.checks),
        "bgpy_counter": count,
        "bgpy_acked_sum": acked[0],
        "rss_kib": {
            "after_warmup": rss_start,
            "end": rss_end,
            "growth_percent": round(growth, 1),
        },
        "fds": {"after_warmup": fds_start, "end": fds_end},
        "temp_files_left": len(leftover),
        "server_exit": status,
    }
    print(json.dumps(report, indent=2))
    well_formed_errors = sum(v for k, v in stats.errors.items())
    ok = (
        well_formed_errors == 0
        and count == acked[0]
        and growth <= 10
        and fds_end <= fds_start
        and not leftover
    )
    print("SOAK PASSED" if ok else "SOAK FAILED")
    return 0 if ok else 1


def bgpy_counter(addresses):
    """The server's bgpy counter, read through the playground's HTTP bridge."""
    r = requests.get(f"http://{addresses['http']}/bgpy/state", timeout=10)
    return r.json()["state"]["count"]


if __name__ == "__main__":
    sys.exit(main())
