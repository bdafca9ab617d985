"""
Igor broadcast fan-out and sends to one client, on one instance and on two
instances sharing a Redis broker (--broker), in one run:

- a process broadcasting bursts to N connected clients (default 5,000):
  deliveries per second (until every client got every message) and server
  CPU per delivery, with broadcasts framed once (autobahn's prepared
  messages, what the hub does) against autobahn's sendMessage per client
  (the reference: a loop over the clients) and a frame made per client by
  the hub's own writer;
- the same fan-out with the clients spread over two instances, the burst
  published once through Redis to the other one (CPU of both servers);
- C{output.send(..., client_id=X)} latency, p50/p99, to a client of the
  same instance and to a client of the other instance.

    .venv/bin/python bench/broker_bench.py
    .venv/bin/python bench/broker_bench.py --clients 1000 --bursts 3   # quick
    .venv/bin/python bench/broker_bench.py --idle-only --rounds 3  # upkeep only

The load generator is the raw asyncio WebSocket client of igor_bench.py in
this process (it counts frames, it does not parse them); the servers and a
redis-server of its own run as child processes on 127.0.0.1.  On a 2-core
machine the clients compete with the servers for the cores: server CPU per
delivery is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from igor_bench import Conn  # noqa: E402

from twistbridge.testing import BridgeProcess, free_port, wait_for  # noqa: E402

MARK = b'"action":"b"'


#: How a broadcast is written to each client (the app's framing handler).
MODES = (
    ("sendMessage per client", "sendMessage"),
    ("frame per client", "frame"),
    ("prepared", "prepared"),
)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        sys.exit(f"need {needed} descriptors, the hard limit is {hard}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counter:
    """A client that counts the broadcast frames it gets (no parsing)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.count = 0
        self.event: asyncio.Event = asyncio.Event()
        self.want = 0
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        tail = b""
        reader = self.conn.reader
        while True:
            data = await reader.read(65536)
            if not data:
                return
            chunk = tail + data
            self.count += chunk.count(MARK)
            tail = chunk[-(len(MARK) - 1) :]
            if self.count >= self.want:
                self.event.set()


class Instance(BridgeProcess):
    def __init__(self, broker: str = "") -> None:
        args = ["--app", "broker_bench_app:bridge", "--igor-port", "none",
                "--bgpy-port", "none"]  # fmt: skip
        if broker:
            args += ["--broker", broker]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH")]))
        BridgeProcess.__init__(self, args, env=env, closed=("igor", "bgpy"))

    def health(self) -> Dict[str, Any]:
        import requests

        return requests.get(self.url("/health"), timeout=5).json()


async def call(conn: Conn, action: str, data: Any = None) -> Any:
    conn.send(json.dumps({"streamId": "c", "action": action, "data": data}).encode())
    got = None
    while True:
        m = json.loads(await conn.recv())
        if m.get("streamId") != "c":
            continue
        if m.get("close"):
            return got
        got = m.get("data")


async def open_many(port: int, n: int) -> List[Conn]:
    sem = asyncio.Semaphore(200)

    async def one() -> Conn:
        async with sem:
            return await asyncio.wait_for(Conn.open(port, "/ws"), 60)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def fan_out(
    control: Conn,
    servers: List[Instance],
    counters: List[Counter],
    bursts: int,
    n: int,
    size: int,
    idle: float = 0.0,
) -> Dict[str, float]:
    """
    C{bursts} times C{n} broadcasts; the best burst's rates (C{idle}: the
    servers' CPU seconds per second without traffic, taken off for C{net_us}).
    """
    best: Dict[str, float] = {}
    for _ in range(bursts):
        for c in counters:
            c.want = c.count + n
            c.event.clear()
        cpu0 = sum(cpu_seconds(s.process.pid) for s in servers)
        t0 = time.perf_counter()
        assert await call(control, "burst", {"n": n, "size": size}) == "done"
        await asyncio.wait_for(asyncio.gather(*(c.event.wait() for c in counters)), 120)
        elapsed = time.perf_counter() - t0
        cpu = sum(cpu_seconds(s.process.pid) for s in servers) - cpu0
        deliveries = n * len(counters)
        figures = {
            "per_s": deliveries / elapsed,
            "cpu_us": cpu / deliveries * 1e6,
            "net_us": (cpu - idle * elapsed) / deliveries * 1e6,
            "deliveries": deliveries,
        }
        if not best or figures["cpu_us"] < best["cpu_us"]:
            best = figures
        await asyncio.sleep(0.5)
    return best


async def idle_cpu(servers: List[Instance], seconds: float) -> float:
    """The servers' CPU seconds per second while no message is sent."""
    cpu0 = sum(cpu_seconds(s.process.pid) for s in servers)
    await asyncio.sleep(seconds)
    return (sum(cpu_seconds(s.process.pid) for s in servers) - cpu0) / seconds


async def latency(sender: Conn, receiver: Conn, to: Any, samples: int) -> List[float]:
    times = []
    for _ in range(samples):
        sender.send(
            json.dumps({"streamId": "p", "action": "ping", "data": to}).encode()
        )
        t0 = time.perf_counter()
        while True:
            m = json.loads(await receiver.recv())
            if m.get("action") == "pong":
                break
        times.append(time.perf_counter() - t0)
        # the sender's own reply ("sent", close)
        while True:
            m = json.loads(await sender.recv())
            if m.get("streamId") == "p" and m.get("close"):
                break
    times.sort()
    return times


def pct(times: List[float], p: float) -> float:
    return times[min(len(times) - 1, int(len(times) * p))] * 1000


class Redis:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="broker-bench-")
        self.port = free_port()
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--port",
             str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def ping() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16) == b"+PONG\r\n"
            except OSError:
                return False

        wait_for(ping, 10, what="redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def started_pair(redis: Redis) -> tuple:
    """Two instances on C{redis}, once both say their broker is up."""
    a, b = Instance(redis.url).start(), Instance(redis.url).start()
    for i in (a, b):
        wait_for(lambda i=i: i.health()["status"] == "ok", 15, what="broker up")
    return a, b


async def idle_only(args: argparse.Namespace) -> None:
    """The two instances' idle CPU with the clients spread over them, per round."""
    redis = Redis()
    try:
        a, b = started_pair(redis)
        try:
            half = args.clients // 2
            conns = await open_many(a.port(), half)
            conns += await open_many(b.port(), args.clients - half)
            await asyncio.sleep(1.0)  # (the clients' presence settles)
            rounds = [
                await idle_cpu([a, b], args.idle_seconds) for _ in range(args.rounds)
            ]
            for c in conns:
                c.close()
        finally:
            a.stop()
            b.stop()
    finally:
        redis.stop()
    figures = ", ".join(f"{r * 100:.1f}%" for r in rounds)
    print(
        f"2 instances idle with {args.clients:,} clients (presence upkeep), "
        f"{args.idle_seconds:g} s rounds: {figures} of a core; "
        f"best {min(rounds) * 100:.1f}%, median "
        f"{sorted(rounds)[len(rounds) // 2] * 100:.1f}%; load average "
        f"{open('/proc/loadavg').read().split()[0]}"
    )


async def run(args: argparse.Namespace) -> None:
    if args.idle_only:
        await idle_only(args)
        return
    results: Dict[str, Any] = {}
    # One instance, no broker: prepared against one frame per client.
    with Instance() as one:
        control = await Conn.open(one.port(), "/ws")
        conns = await open_many(one.port(), args.clients)
        counters = [Counter(c) for c in conns]
        for label, mode in MODES:
            assert await call(control, "framing", mode) == mode
            results[label] = await fan_out(
                control, [one], counters, args.bursts, args.messages, args.size
            )
        for c in conns:
            c.close()
        control.close()

    redis = Redis()
    try:
        a, b = started_pair(redis)
        try:
            holder = wait_for(
                lambda: next(
                    (i for i in (a, b) if i.health()["broker"]["processes"] == ["fan"]),
                    None,
                ),
                15,
                what="a holder",
            )
            other = b if holder is a else a
            control = await Conn.open(holder.port(), "/ws")
            half = args.clients // 2
            conns = await open_many(holder.port(), half)
            conns += await open_many(other.port(), args.clients - half)
            counters = [Counter(c) for c in conns]
            await asyncio.sleep(1.0)
            results["idle"] = await idle_cpu([a, b], args.idle_seconds)
            results["2 instances, Redis"] = await fan_out(
                control,
                [a, b],
                counters,
                args.bursts,
                args.messages,
                args.size,
                results["idle"],
            )
            for c in conns:
                c.close()
            # Latency: to a client of the holder, and of the other instance.
            near = await Conn.open(holder.port(), "/ws")
            far = await Conn.open(other.port(), "/ws")
            near_id, far_id = await call(near, "whoami"), await call(far, "whoami")
            await asyncio.sleep(1.0)  # (the holder hears of far's client)
            results["same"] = await latency(control, near, near_id, args.samples)
            results["cross"] = await latency(control, far, far_id, args.samples)
        finally:
            a.stop()
            b.stop()
    finally:
        redis.stop()

    print(
        f"\nIgor broadcast fan-out: {args.clients:,} clients, bursts of "
        f"{args.messages} messages of ~{args.size + 30} bytes (best of {args.bursts})"
    )
    print(
        f"{'':28} {'deliveries/s':>14} {'server CPU/delivery':>20} {'net of idle':>12}"
    )
    for label in [label for label, _ in MODES] + ["2 instances, Redis"]:
        r = results[label]
        print(
            f"{label:28} {r['per_s']:>14,.0f} {r['cpu_us']:>17.2f} us "
            f"{r['net_us']:>9.2f} us"
        )
    print(
        f"2 instances idle with {args.clients:,} clients (presence upkeep): "
        f"{results['idle'] * 100:.1f}% of a core"
    )
    prep = results["prepared"]
    for label in ("sendMessage per client", "frame per client"):
        base = results[label]
        print(
            f"prepared / {label}: {prep['per_s'] / base['per_s']:.2f}x "
            f"deliveries/s, {base['cpu_us'] / prep['cpu_us']:.2f}x less CPU per "
            "delivery" + (" (goal >= 2x)" if label.startswith("send") else "")
        )
    print(f"\noutput.send(client_id=X) latency, {args.samples} sends, one at a time")
    print(f"{'':28} {'p50':>9} {'p99':>9}")
    for label, key in (("same instance", "same"), ("other instance, Redis", "cross")):
        t = results[key]
        print(f"{label:28} {pct(t, 0.5):>6.2f} ms {pct(t, 0.99):>6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=20, help="per burst")
    parser.add_argument("--size", type=int, default=64, help="filler bytes")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="idle CPU measured over"
    )
    parser.add_argument(
        "--idle-only", action="store_true", help="only the idle upkeep, per round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --idle-only")
    args = parser.parse_args()
    raise_fd_limit(args.clients * 2 + 200)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
