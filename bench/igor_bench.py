"""
Igor WebSocket streams: twistbridge beside a bare autobahn JSON echo server
(the ceiling) and, when available, the original Igor server.

For each server, in one run:

- JSON echo round trips per second (request -> data -> close) on 1
  connection and on 50 concurrent connections, with p50/p99 latency and
  errors (wrong replies, dropped connections);
- server RSS per idle client with N idle connections (default 5,000);
- descriptors the server still holds 5 s after all of them disconnect.

"twistbridge igor port, metrics on" is the same server started with
--metrics-port: its rates are printed beside the metrics-off row with their
ratio, and its /metrics is read after the run to check that it counted the
round trips.

    .venv/bin/python bench/igor_bench.py
    .venv/bin/python bench/igor_bench.py --only bare twistbridge twistbridge-metrics \\
        --rounds 1 --seconds 5 --idle 0     # the metrics' cost, in under a minute
    .venv/bin/python bench/igor_bench.py --original /path/to/igor \\
        --original-python /path/to/venv-with-websocket-server/bin/python

The load generator is a minimal asyncio WebSocket client (raw frames, no
per-message library overhead) in this process; servers run as child
processes on 127.0.0.1.  Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from twistbridge.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))


# servers ----------------------------------------------------------------------


class Server:
    """A server child process that prints the port it listens on."""

    def __init__(
        self,
        name: str,
        argv: List[str],
        pattern: str,
        env: Optional[Dict[str, str]] = None,
    ):
        self.name = name
        self.argv = argv
        self.pattern = re.compile(pattern)
        self.env = env
        self.port: Optional[int] = None
        self.output = ""
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=HERE,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 30
        while self.port is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.output}")
            time.sleep(0.05)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.output += raw.decode("utf-8", "replace")
            m = self.pattern.search(self.output)
            if m and self.port is None:
                self.port = int(m.group(1))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def listener_port(self, name: str) -> int:
        """The port the C{name} listener logged (twistbridge only)."""
        pattern = re.compile(name + r" listening on 127\.0\.0\.1:(\d+)")
        deadline = time.monotonic() + 10
        while not pattern.search(self.output):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {name} listener:\n{self.output}")
            time.sleep(0.05)  # the reader thread is still reading the log
        return int(pattern.search(self.output).group(1))


def scrape(port: int) -> Dict[Any, float]:
    """Every sample of a bridge's GET /metrics: {(name, labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def check_counted(server: Server, sent: int) -> str:
    """Wait until /metrics counted the C{sent} echo requests (each is counted
    when its connection closes), then say what it counted."""
    port = server.listener_port("metrics")
    key = ("twistbridge_igor_messages_total", (("direction", "in"),))
    deadline = time.monotonic() + 10
    while True:
        counted = scrape(port).get(key, 0.0)
        if counted >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # the last connections are still closing
    if counted != sent:
        return (
            f"MISMATCH: /metrics counted {counted:,.0f} Igor messages in, sent {sent:,}"
        )
    return f"/metrics counted {counted:,.0f} Igor messages in (sent {sent:,})"


# client -------------------------------------------------------------------------


class Conn:
    """One raw WebSocket client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, path: str = "/") -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            b"GET "
            + path.encode()
            + b" HTTP/1.1\r\nHost: 127.0.0.1:"
            + str(port).encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
            + key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    def send(self, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes((0x81, 0x80 | n))
        elif n < 65536:
            header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
        # An all-zero masking key: the payload goes out as is.
        self.writer.write(header + b"\x00\x00\x00\x00" + payload)

    async def recv(self) -> bytes:
        b1, b2 = await self.reader.readexactly(2)
        n = b2 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        data = await self.reader.readexactly(n)
        if b1 & 0x0F == 8:
            raise ConnectionError("closed by the server")
        return data

    action = b"echo"

    async def echo(self, i: int) -> None:
        self.send(b'{"streamId":"s","action":"%s","data":%d}' % (self.action, i))
        got_data = False
        while True:
            m = json.loads(await self.recv())
            if m.get("streamId") != "s":
                continue
            if m.get("close"):
                break
            if m.get("data") != i:
                raise ValueError(f"wrong reply {m}")
            got_data = True
        if not got_data:
            raise ValueError("close without data")

    def close(self) -> None:
        self.writer.close()


async def throughput(
    server: Server, connections: int, seconds: float, path: str
) -> Dict[str, Any]:
    port = server.port
    latencies: List[float] = []
    errors = 0
    sent = 0
    stop_at = 0.0

    async def worker(k: int) -> None:
        nonlocal errors, sent
        try:
            conn = await Conn.open(port, path)
        except Exception:
            errors += 1
            return
        i = 0
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                sent += 1
                await asyncio.wait_for(conn.echo(k * 1_000_000 + i), 10)
                latencies.append(time.perf_counter() - t0)
                i += 1
        except Exception:
            errors += 1
        finally:
            conn.close()

    cpu0 = server.cpu_seconds()
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(worker(k) for k in range(connections)))
    elapsed = time.perf_counter() - start
    cpu = server.cpu_seconds() - cpu0
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "rate": len(latencies) / elapsed,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "errors": errors,
        "cpu_us": 1e6 * cpu / max(1, len(latencies)),
        "sent": sent,
    }


async def idle(server: Server, clients: int, path: str) -> Dict[str, Any]:
    warm = await Conn.open(server.port, path)
    await warm.echo(1)
    await asyncio.sleep(0.5)
    rss0, fds0 = server.rss_kib(), server.fds()
    conns: List[Conn] = []
    failed = 0
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        nonlocal failed
        async with sem:
            try:
                conns.append(await asyncio.wait_for(Conn.open(server.port, path), 30))
            except Exception:
                failed += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    await asyncio.sleep(1.0)
    rss1 = server.rss_kib()
    for c in conns:
        c.close()
    await asyncio.sleep(5.0)
    fds_left = server.fds() - fds0
    warm.close()
    return {
        "kib_per_client": (rss1 - rss0) / max(1, len(conns)),
        "opened": len(conns),
        "failed": failed,
        "fds_left": fds_left,
    }


def best(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The fastest of several runs (the machine may be shared), errors summed."""
    top = dict(max(runs, key=lambda r: r["rate"]))
    top["errors"] = sum(r["errors"] for r in runs)
    # Server CPU per round trip hardly depends on other load: the median.
    top["cpu_us"] = sorted(r["cpu_us"] for r in runs)[len(runs) // 2]
    top["sent"] = sum(r["sent"] for r in runs)
    return top


# report ----------------------------------------------------------------------------


def row(name: str, r: Dict[str, Any], ceiling: Optional[Dict[str, Any]]) -> str:
    def share(key: str) -> str:
        if ceiling is None or not ceiling[key]["rate"]:
            return "     "
        return f"{100 * r[key]['rate'] / ceiling[key]['rate']:4.0f}%"

    one, fifty = r["one"], r["fifty"]
    text = (
        f"{name:<28} {one['rate']:7.0f} {share('one')} {one['p50']:5.2f} {one['p99']:6.2f}"
        f" {one['cpu_us']:5.0f} {one['errors']:3d}"
        f" | {fifty['rate']:7.0f} {share('fifty')} {fifty['p50']:6.2f} {fifty['p99']:7.2f}"
        f" {fifty['cpu_us']:5.0f} {fifty['errors']:3d}"
    )
    if "idle" in r:
        i = r["idle"]
        text += f" | {i['kib_per_client']:6.1f} {i['opened']:5d}/{i['failed']:<4d} {i['fds_left']:6d}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="per throughput phase"
    )
    parser.add_argument("--idle", type=int, default=5000, help="idle clients (0: skip)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds; the best of each is reported",
    )
    parser.add_argument(
        "--ws-path", action="store_true", help="also measure /ws on the HTTP port"
    )
    parser.add_argument(
        "--thread",
        action="store_true",
        help="also measure a plain-def (thread pool) echo handler",
    )
    parser.add_argument("--original", help="a checkout of github.com/cezary986/igor")
    parser.add_argument(
        "--original-python",
        default=sys.executable,
        help="a Python with websocket-server installed",
    )
    parser.add_argument(
        "--original-idle",
        type=int,
        default=None,
        help="idle clients for the original (a thread each) [default: --idle]",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        metavar="SERVER",
        help="these servers only: bare, bare-plain, twistbridge, "
        "twistbridge-metrics (and those the options above add)",
    )
    args = parser.parse_args()

    python = sys.executable
    twistd = os.path.join(os.path.dirname(python), "twistd")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])),
    )
    plan = [
        (
            "bare autobahn (ceiling)",
            "/",
            Server(
                "bare",
                [python, os.path.join(HERE, "igor_bare_server.py")],
                r"listening on (\d+)",
            ),
        ),
        (
            "bare autobahn, plain log",
            "/",
            Server(
                "bare-plain",
                [python, os.path.join(HERE, "igor_bare_server.py")],
                r"listening on (\d+)",
                dict(os.environ, IGOR_BARE_PLAIN_LOG="1"),
            ),
        ),
        (
            "twistbridge igor port",
            "/",
            Server(
                "twistbridge",
                [
                    twistd,
                    "-n",
                    "--pidfile=",
                    "bridge",
                    "--app",
                    "igor_bench_app:bridge",
                    "--port",
                    "none",
                    "--bgpy-port",
                    "none",
                    "--igor-port",
                    "0",
                    # 5000 idle clients, all from 127.0.0.1: past the default
                    # caps (4096 connections a listener, 512 a client
                    # address), which would refuse the rest.
                    "--max-connections",
                    "0",
                    "--max-connections-per-client",
                    "0",
                ],
                r"igor listening on 127\.0\.0\.1:(\d+)",
                env,
            ),
        ),
    ]
    plan.append(
        (
            "twistbridge igor, metrics on",
            "/",
            Server(
                "twistbridge-metrics",
                [*plan[2][2].argv, "--metrics-port", "0"],
                plan[2][2].pattern.pattern,
                env,
            ),
        )
    )
    if args.ws_path:
        plan.append(
            (
                "twistbridge /ws on HTTP port",
                "/ws",
                Server(
                    "twistbridge-ws",
                    [
                        twistd,
                        "-n",
                        "--pidfile=",
                        "bridge",
                        "--app",
                        "igor_bench_app:bridge",
                        "--port",
                        "0",
                        "--bgpy-port",
                        "none",
                        "--igor-port",
                        "none",
                        "--max-connections",
                        "0",
                        "--max-connections-per-client",
                        "0",
                    ],
                    r"http listening on 127\.0\.0\.1:(\d+)",
                    env,
                ),
            )
        )
    if args.thread:
        plan.append(
            (
                "twistbridge, thread handler",
                "/",
                Server(
                    "twistbridge-thread",
                    plan[2][2].argv,
                    plan[2][2].pattern.pattern,
                    env,
                ),
            )
        )
    if args.original:
        port = free_port()
        plan.append(
            (
                "original Igor",
                "/",
                Server(
                    "original",
                    [
                        args.original_python,
                        os.path.join(HERE, "igor_original_runner.py"),
                        args.original,
                        str(port),
                    ],
                    r"listening on (\d+)",
                ),
            )
        )

    if args.only:
        plan = [entry for entry in plan if entry[2].name in args.only]
    print(
        f"igor_bench: {args.seconds:g} s per phase, {args.idle} idle clients, "
        f"best of {args.rounds} interleaved rounds, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'server':<28} {'1 conn rt/s':>13} {'p50ms':>5} {'p99ms':>6} {'cpuus':>5} {'err':>3}"
        f" | {'50 conn rt/s':>13} {'p50ms':>6} {'p99ms':>7} {'cpuus':>5} {'err':>3}"
        f" | {'KiB/idle':>8} {'open/fail':>10} {'fds left':>6}"
    )
    for _, _, server in plan:
        server.start()
    try:
        runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
            name: {"one": [], "fifty": []} for name, _, _ in plan
        }
        warm_sent = {name: 0 for name, _, _ in plan}
        for _ in range(args.rounds):
            # Interleaved, so that a burst of load elsewhere hits every server.
            for name, path, server in plan:
                print(f"... round {_ + 1}: {name}", file=sys.stderr, flush=True)
                Conn.action = b"echo_thread" if "thread" in name else b"echo"
                warm = asyncio.run(throughput(server, 1, 0.3, path))  # warm-up
                warm_sent[name] += warm["sent"]
                runs[name]["one"].append(
                    asyncio.run(throughput(server, 1, args.seconds, path))
                )
                runs[name]["fifty"].append(
                    asyncio.run(throughput(server, 50, args.seconds, path))
                )
        results = {name: {k: best(v) for k, v in r.items()} for name, r in runs.items()}
        counted = {
            name: check_counted(
                server,
                warm_sent[name]
                + sum(results[name][k]["sent"] for k in ("one", "fifty")),
            )
            for name, _, server in plan
            if server.name == "twistbridge-metrics"
        }
        if args.idle:
            for name, path, server in plan:
                n = args.idle
                if server.name == "original" and args.original_idle is not None:
                    n = args.original_idle
                Conn.action = b"echo"
                print(f"... {n} idle clients on {name}", file=sys.stderr, flush=True)
                # A fresh process: the throughput phases may have left it
                # grown (or, for the original, broken).
                server.stop()
                server.port = None
                server.output = ""
                server.start()
                try:
                    results[name]["idle"] = asyncio.run(idle(server, n, path))
                except Exception as e:
                    print(f"    failed: {e!r}", file=sys.stderr, flush=True)
    finally:
        for _, _, server in plan:
            server.stop()
    print(header)
    ceiling = results[plan[0][0]] if plan[0][2].name == "bare" else None
    for name, _, _ in plan:
        r = results[name]
        print(row(name, r, None if r is ceiling else ceiling))
    names = {server.name: name for name, _, server in plan}
    if "twistbridge" in names and "twistbridge-metrics" in names:
        off, on = results[names["twistbridge"]], results[names["twistbridge-metrics"]]
        print(
            "metrics on / off: "
            + ", ".join(
                f"{label} {on[k]['rate'] / off[k]['rate']:.1%} of the rate, "
                f"{on[k]['cpu_us'] / off[k]['cpu_us']:.2f}x the CPU per round trip"
                for k, label in (("one", "1 conn"), ("fifty", "50 conn"))
            )
            + " (goal: rate >= 95%)"
        )
        for text in counted.values():
            print(f"metrics on: {text}")
    print(
        "rt/s: JSON echo round trips per second (request -> data -> close); "
        "%: share of the bare autobahn ceiling; cpuus: server CPU microseconds per round trip "
        "(median of the rounds); fds left: descriptors still held 5 s "
        "after every idle client disconnected"
    )


if __name__ == "__main__":
    main()
