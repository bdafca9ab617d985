"""
JSON-RPC echo on C{twistd bridge --workers 2} against C{--workers 1}, side by
side in one run: requests per second and server CPU per request.

    apt-get install -y wrk redis-server
    .venv/bin/python bench/workers_bench.py [--duration 5] [--rounds 2] [--connections 50]

Both servers run tests/apps/workers_app.py with the same redis-server as
their C{--broker} (started here on a free port, in a temporary directory),
on a port chosen here.  The load comes from wrk (one thread, keep-alive
connections), pinned to CPU 1 as in bench/jsonrpc_bench.py, whose wrk
driver this reuses; the servers are not pinned.  Server CPU is the user +
system time of the supervisor and of every worker (from /proc), divided by
the requests wrk completed.

What a 2-core machine can show: the load generator needs a core too, so
two workers share the two cores with wrk and cannot double the rate; what
they can show is that the second worker takes the load the first cannot
(the rate rises while wrk has spare cycles) and what the CPU per request
costs with two processes.  The scaling with the cores is for a machine with
more cores than workers plus the load generator.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from jsonrpc_bench import ONE, post, run_wrk

from twistbridge.testing import free_port, twistd_path, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "tests", "apps")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system seconds of C{pid} (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


class Redis:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="workers-bench-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server"]
            + ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Bridge:
    """C{twistd -n bridge --workers N} on a free port, checked once."""

    def __init__(self, workers: int, broker: str) -> None:
        self.workers = workers
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=APPS)
        self.proc = subprocess.Popen(
            [twistd_path(), "-n", "--pidfile=", "bridge"]
            + ["--app", "workers_app:bridge", "--port", str(self.port)]
            + ["--igor-port", "none", "--bgpy-port", "none"]
            + ["--workers", str(workers), "--broker", broker, "--log-format", "json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}/rpc"

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited with {self.proc.returncode}")
            try:
                return post(self.url, ONE)["result"] == "hello"
            except OSError:
                return False

        wait_for(answers, 30, what=f"--workers {workers} to answer")
        if workers > 1:
            wait_for(lambda: len(self.pids()) == 1 + workers, 30, what="the workers")

    def pids(self) -> list:
        return [self.proc.pid, *children(self.proc.pid)]

    def measure(self, duration: int, connections: int) -> tuple:
        """(requests/s, server CPU microseconds per request)."""
        pids = self.pids()
        before = sum(cpu_seconds(p) for p in pids)
        rate, completed = run_wrk(self.url, ONE, duration, connections)
        used = sum(cpu_seconds(p) for p in pids) - before
        return rate, used / max(completed, 1) * 1e6

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("workers_bench: needs wrk (apt-get install -y wrk)")
    redis = Redis()
    results: dict = {1: [], 2: []}
    try:
        wait_for(redis.up, 10, what="redis-server")
        servers = {n: Bridge(n, redis.url) for n in (1, 2)}
        try:
            for _ in range(args.rounds):
                for n, server in servers.items():
                    results[n].append(server.measure(args.duration, args.connections))
        finally:
            for server in servers.values():
                server.stop()
    finally:
        redis.stop()
    cores = os.cpu_count() or 1
    print(
        f"JSON-RPC echo, wrk -t1 -c{args.connections} pinned to CPU 1, "
        f"{args.rounds} x {args.duration}s each, {cores} cores"
    )
    print(f"{'':12} {'requests/s':>12} {'CPU us/request':>15}")
    best = {}
    for n, runs in results.items():
        rate = max(r for r, _ in runs)
        cpu = min(c for _, c in runs)
        best[n] = rate
        print(f"--workers {n:<2} {rate:>12.0f} {cpu:>15.1f}")
    print(f"ratio 2/1: {best[2] / best[1]:.2f}x requests/s")
    if cores <= 2:
        print(
            f"(on {cores} cores the load generator takes a core too: two workers "
            "share the machine with wrk, so this cannot show 2x)"
        )


if __name__ == "__main__":
    main()
