"""
JSON-RPC throughput, side by side, in one run.

    .venv/bin/pip install aiohttp aiohttp-rpc     # the aiohttp reference (optional)
    apt-get install -y wrk
    .venv/bin/python bench/jsonrpc_bench.py [--duration 5] [--connections 50]
    .venv/bin/python bench/jsonrpc_bench.py --profile   # cProfile of the reactor path
    .venv/bin/python bench/jsonrpc_bench.py --profile reactor+metrics
    .venv/bin/python bench/jsonrpc_bench.py --only reactor reactor+metrics --duration 5
    .venv/bin/python bench/jsonrpc_bench.py --server-cpu --rounds 3  # CPU per request

Each server runs in its own process pinned to CPU 0 (taskset), wrk runs on
CPU 1 with one thread and keep-alive connections.  Servers:

    bare        a twisted.web resource answering a constant JSON body (the ceiling)
    bare-noform the same on Site(parsePOSTFormSubmission=False): no Content-Type
                parsing, as twistbridge's BridgeSite for non-form bodies
    reactor     twistbridge, echo with run_in="reactor"
    reactor+metrics
                the same with the Prometheus metrics on (metrics_port, as
                --metrics-port): printed beside reactor with their ratio, and
                its /metrics is read after the run to check every request
                was counted
    thread      twistbridge, echo as a plain def (thread pool)
    batch100    twistbridge, one request = a batch of 100 reactor echo calls
    txjsonrpc   txjsonrpc-ng's own JSONRPC resource, jsonrpc_echo
    aiohttp-rpc aiohttp + aiohttp-rpc, echo (skipped when not installed)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from twistbridge.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ONE = {"jsonrpc": "2.0", "method": "echo", "params": ["hello"], "id": 1}
BATCH = [
    {"jsonrpc": "2.0", "method": "echo", "params": [i], "id": i} for i in range(100)
]


# --- servers (run as: jsonrpc_bench.py --serve KIND PORT) -------------------


def serve_bare(port: int, parse_forms: bool = True) -> None:
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    body = json.dumps({"jsonrpc": "2.0", "result": "hello", "id": 1}).encode()

    class Bare(Resource):
        isLeaf = True

        def render_POST(self, request):
            request.content.read()
            request.setHeader(b"Content-Type", b"application/json")
            return body

    site = Site(Bare())
    if not parse_forms:
        site._parsePOSTFormSubmission = False
    reactor.listenTCP(port, site, interface="127.0.0.1")
    reactor.run()


def serve_bridge(port: int, run_in: str, metrics_port: int | None = None) -> None:
    from twisted.internet import reactor

    from twistbridge import Bridge

    bridge = Bridge(
        port=port, igor_port="none", bgpy_port="none", metrics_port=metrics_port
    )

    def echo(data):
        return data

    bridge.rpc_function(echo, run_in=None if run_in == "thread" else "reactor")
    service = bridge.service()
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def serve_plain_site(port: int) -> None:
    """The JSON-RPC resource mounted on a plain twisted.web Site (embedding)."""
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from twistbridge import Bridge

    bridge = Bridge()

    def echo(data):
        return data

    bridge.rpc_function(echo, run_in="reactor")
    root = Resource()
    bridge.rpc.add_root(root)
    reactor.listenTCP(port, Site(root), interface="127.0.0.1")
    reactor.run()


def serve_txjsonrpc(port: int) -> None:
    from twisted.internet import reactor
    from twisted.web.server import Site
    from txjsonrpc_ng.web.jsonrpc import JSONRPC

    class Api(JSONRPC):
        def jsonrpc_echo(self, data):
            return data

    reactor.listenTCP(port, Site(Api()), interface="127.0.0.1")
    reactor.run()


def serve_aiohttp(port: int) -> None:
    import aiohttp_rpc
    from aiohttp import web

    def echo(data):
        return data

    rpc = aiohttp_rpc.JSONRPCServer()
    rpc.add_methods([echo])
    app = web.Application()
    app.router.add_routes([web.post("/rpc", rpc.handle_http_request)])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve(
    kind: str, port: int, profile: str | None, metrics_port: int | None = None
) -> None:
    if profile:
        import cProfile

        from twisted.internet import reactor

        profiler = cProfile.Profile()

        def dump():
            profiler.disable()
            profiler.dump_stats(profile)

        reactor.addSystemEventTrigger("after", "shutdown", dump)
        profiler.enable()
    {
        "bare": serve_bare,
        "bare-noform": lambda p: serve_bare(p, parse_forms=False),
        "reactor": lambda p: serve_bridge(p, "reactor"),
        "reactor+metrics": lambda p: serve_bridge(p, "reactor", metrics_port),
        "batch100": lambda p: serve_bridge(p, "reactor"),
        "thread": lambda p: serve_bridge(p, "thread"),
        "txjsonrpc": serve_txjsonrpc,
        "reactor-plain": serve_plain_site,
        "aiohttp-rpc": serve_aiohttp,
    }[kind](port)


# --- server CPU per request, in this process (robust on a busy machine) -----


def cpu_sites():
    """The in-process sites of the --cpu mode: name -> (site, payload)."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site
    from txjsonrpc_ng.web.jsonrpc import JSONRPC

    from twistbridge import Bridge

    body = json.dumps({"jsonrpc": "2.0", "result": "hello", "id": 1}).encode()

    class Bare(Resource):
        isLeaf = True

        def render_POST(self, request):
            request.content.read()
            request.setHeader(b"Content-Type", b"application/json")
            return body

    class Api(JSONRPC):
        def jsonrpc_echo(self, data):
            return data

    def bare_site():
        root = Resource()
        root.putChild(b"rpc", Bare())
        return Site(root)

    def bare_noform_site():
        # the stricter ceiling: Site(parsePOSTFormSubmission=False) skips
        # Twisted's Content-Type parsing, as BridgeSite does for non-forms
        site = bare_site()
        site._parsePOSTFormSubmission = False
        return site

    def bridge_site():
        bridge = Bridge()
        bridge.rpc_function(lambda data: data, name="echo", run_in="reactor")
        root = Resource()
        bridge.rpc.add_root(root)
        return Site(root)

    def bridge_full_site():
        # what `twistd bridge` serves: BridgeSite (early body checks, header
        # timeout, access log) over the whole root
        from twistbridge.web import BridgeSite

        bridge = Bridge()
        bridge.rpc_function(lambda data: data, name="echo", run_in="reactor")
        return BridgeSite(bridge.resource(), bridge.settings)

    def bridge_metrics_site():
        # the same with the metrics counting (what --metrics-port turns on);
        # cpu_per_request stops the counting after the measurement
        from twistbridge.web import BridgeSite

        bridge = Bridge(metrics_port=0)
        bridge.rpc_function(lambda data: data, name="echo", run_in="reactor")
        site = BridgeSite(bridge.resource(), bridge.settings)
        metrics = bridge.runtime().metrics
        metrics.start()
        site.bench_stop = metrics.stop
        return site

    def tx_site():
        root = Resource()
        root.putChild(b"rpc", Api())
        return Site(root)

    return {
        "bare": (bare_site, ONE),
        "bare-noform": (bare_noform_site, ONE),
        "reactor": (bridge_site, ONE),
        "reactor-site": (bridge_full_site, ONE),
        "reactor-site+metrics": (bridge_metrics_site, ONE),
        "batch100": (bridge_site, BATCH),
        "txjsonrpc": (tx_site, ONE),
    }


def cpu_per_request(make_site, payload, n: int) -> float:
    """Server CPU microseconds per keep-alive request, fed through a StringTransport."""
    from twisted.internet.testing import StringTransport

    data = json.dumps(payload).encode()
    raw = (
        b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(data)
    ) + data
    site = make_site()
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    assert b" 200 OK" in transport.value(), transport.value()[:300]
    transport.clear()
    start = time.process_time()
    for _ in range(n):
        protocol.dataReceived(raw)
        transport.clear()
    used = time.process_time() - start
    protocol.connectionLost(None)
    getattr(site, "bench_stop", lambda: None)()
    return used / n * 1e6


def cpu_mode(rounds: int) -> None:
    sites = cpu_sites()
    best: dict = {}
    for _ in range(rounds):
        for name, (make_site, payload) in sites.items():
            n = 300 if name == "batch100" else 3000
            us = cpu_per_request(make_site, payload, n)
            best[name] = min(us, best.get(name, float("inf")))
    print(f"server CPU per request, in process, best of {rounds} rounds:")
    for name, us in best.items():
        calls = f"  = {100e6 / us:,.0f} calls/s of CPU" if name == "batch100" else ""
        print(f"  {name:20s} {us:8.1f} us  (= {1e6 / us:8,.0f} req/s of CPU){calls}")
    for path in ("reactor", "reactor-site"):
        print(
            f"  {path} / bare {best['bare'] / best[path]:13.1%}  (goal >= 85%)"
            f"   / bare-noform {best['bare-noform'] / best[path]:6.1%}"
            f"   / txjsonrpc {best['txjsonrpc'] / best[path]:5.2f}x (goal >= 1.1x)"
        )
    on, off = best["reactor-site+metrics"], best["reactor-site"]
    hook = metrics_hook_us(sites["reactor-site+metrics"][0])
    print(
        f"  metrics on / off     {on / off:7.3f}x CPU per request"
        f"  ({on - off:+.1f} us; goal <= 1.05x)\n"
        f"  the metrics' hook    {hook:8.2f} us per request, timed alone"
        f" = {hook / off:.1%} of reactor-site"
    )


def metrics_hook_us(make_site) -> float:
    """Microseconds the metrics take per request: their access hook, timed
    alone on a real answered request (steadier than the difference of two
    whole-request figures on a busy machine)."""
    import timeit

    from twistbridge import logs

    answered: list = []

    def keep(kind, request, fields):
        if kind == "http" and not answered:
            answered.append(request)

    logs.add_access_hook(keep)
    try:
        cpu_per_request(make_site, ONE, 1)
    finally:
        logs.remove_access_hook(keep)
    from twistbridge import Bridge

    bridge = Bridge(metrics_port=0)
    bridge.rpc_function(lambda data: data, name="echo", run_in="reactor")
    metrics = bridge.runtime().metrics
    metrics.start()
    try:
        n = 20000
        runs = timeit.repeat(
            lambda: metrics.observe("http", answered[0], {}), number=n, repeat=5
        )
    finally:
        metrics.stop()
    return min(runs) / n * 1e6


# --- the driver -------------------------------------------------------------


def post(url: str, payload) -> object:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def wait_ready(url: str, payload, proc) -> object:
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            return post(url, payload)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling a server that is starting up


def pinned(cpu: int, argv: list) -> list:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def run_wrk(url: str, payload, duration: int, connections: int) -> tuple:
    """(requests per second, requests completed) of one wrk run."""
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    body = json.dumps(payload).replace("\\", "\\\\").replace('"', '\\"')
    lua.write(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    lua.close()
    try:
        out = subprocess.run(
            pinned(
                1,
                [
                    "wrk",
                    "-t1",
                    f"-c{connections}",
                    f"-d{duration}s",
                    "-s",
                    lua.name,
                    url,
                ],
            ),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(lua.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in ", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return (
        float(match.group(1)) if match else 0.0,
        int(done.group(1)) if done else 0,
    )


def counted_requests(metrics_url: str) -> int:
    """The JSON-RPC requests answered 200, as the bridge's /metrics counts them."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode("utf-8")
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "twistbridge_http_requests_total" and sample.labels == {
                "endpoint": "jsonrpc",
                "code": "200",
            }:
                total += sample.value
    return int(total)


class Server:
    """One benchmark server process (pinned to CPU 0), checked once before timing."""

    def __init__(self, kind: str, profile: str | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        argv = [sys.executable, __file__, "--serve", kind, str(self.port)]
        if profile:
            argv += ["--profile-out", profile]
        self.metrics_url = None
        self.completed = 1  # the check below
        self.runs = 0  # wrk runs: each may stop with a request per connection in flight
        if kind.endswith("+metrics"):
            metrics_port = free_port()
            argv += ["--serve-metrics-port", str(metrics_port)]
            self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.proc = subprocess.Popen(
            pinned(0, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.url = f"http://127.0.0.1:{self.port}/rpc"
        self.payload = BATCH if kind == "batch100" else ONE
        answer = wait_ready(self.url, self.payload, self.proc)
        if kind == "batch100":
            assert [r["result"] for r in answer] == list(range(100)), answer
        else:
            assert answer["result"] == "hello", answer

    def measure(self, duration: int, connections: int) -> float:
        rate, completed = run_wrk(self.url, self.payload, duration, connections)
        self.completed += completed
        self.runs += 1
        return rate

    def check_counted(self, connections: int) -> str:
        """Check that /metrics counted every request wrk completed (and at
        most one in flight per connection each time wrk stopped)."""
        counted = counted_requests(self.metrics_url)
        if not self.completed <= counted <= self.completed + connections * self.runs:
            raise RuntimeError(
                f"{self.kind}: /metrics counted {counted} requests, "
                f"wrk completed {self.completed}"
            )
        return (
            f"/metrics counted {counted:,} requests (wrk completed {self.completed:,})"
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(kind: str, duration: int, connections: int, profile: str | None = None):
    server = Server(kind, profile)
    try:
        rate = server.measure(duration, connections)
        if server.metrics_url:
            print(server.check_counted(connections))
        return rate
    finally:
        server.stop()


# --- server CPU per request under wrk (robust on a shared machine) ----------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds process C{pid} has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_mode(kinds: list, duration: int, connections: int, rounds: int) -> None:
    """
    For each server: wrk's rate and the server's own CPU time per request
    (from /proc), best of C{rounds}.  The CPU figure hardly moves when other
    processes share the machine, where req/s does; compare its ratios.
    """
    servers = [Server(kind) for kind in kinds]
    best: dict = {}
    try:
        for _ in range(rounds):
            for server in servers:
                before = process_cpu(server.proc.pid)
                rate = server.measure(duration, connections)
                used = process_cpu(server.proc.pid) - before
                us = used / max(rate * duration, 1) * 1e6
                old = best.get(server.kind)
                if old is None or us < old[1]:
                    best[server.kind] = (rate, us)
    finally:
        for server in servers:
            server.stop()
    print(
        f"wrk -t1 -c{connections} -d{duration}s; server CPU per request "
        f"(/proc), best of {rounds}; load average {os.getloadavg()[0]:.2f}"
    )
    for kind in kinds:
        rate, us = best[kind]
        print(f"  {kind:12s} {rate:9,.0f} req/s  {us:7.1f} us CPU/request")
    if "aiohttp-rpc" in best:
        ref = best["aiohttp-rpc"][1]
        for kind in kinds:
            if kind != "aiohttp-rpc":
                print(
                    f"  {kind} / aiohttp-rpc (CPU per request) "
                    f"{ref / best[kind][1]:5.2f}x  (goal for reactor >= 1.3x)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--only", nargs="*")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each server N times, keep the best",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="reactor",
        metavar="KIND",
        help="cProfile one server's path (default: reactor)",
    )
    parser.add_argument(
        "--cpu", action="store_true", help="server CPU per request, in process (no wrk)"
    )
    parser.add_argument(
        "--server-cpu",
        action="store_true",
        help="server CPU per request under wrk, from /proc (with --only)",
    )
    parser.add_argument(
        "--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--serve-metrics-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(
            args.serve[0], int(args.serve[1]), args.profile_out, args.serve_metrics_port
        )
        return
    if args.cpu:
        cpu_mode(max(args.rounds, 5))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    if args.server_cpu:
        server_cpu_mode(
            args.only or ["bare", "reactor", "aiohttp-rpc"],
            args.duration,
            args.connections,
            args.rounds,
        )
        return
    if args.profile:
        import pstats

        out = tempfile.mktemp(suffix=".prof")
        kind = args.profile
        rate = measure(kind, args.duration, args.connections, profile=out)
        for _ in range(100):
            if os.path.exists(out):
                break
            time.sleep(0.1)  # the server writes its profile as it exits
        print(f"{kind} echo under cProfile: {rate:,.0f} req/s (profiling slows it)")
        pstats.Stats(out).sort_stats("tottime").print_stats(20)
        return
    kinds = args.only or [
        "bare",
        "bare-noform",
        "reactor",
        "reactor+metrics",
        "thread",
        "batch100",
        "txjsonrpc",
        "aiohttp-rpc",
    ]
    try:
        import aiohttp_rpc  # noqa: F401
    except ImportError:
        if "aiohttp-rpc" in kinds:
            print("aiohttp-rpc: skipped (pip install aiohttp aiohttp-rpc)")
            kinds.remove("aiohttp-rpc")
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s, keep-alive; "
        f"server on CPU 0, wrk on CPU 1; best of {args.rounds} round(s); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    servers = [Server(kind) for kind in kinds]
    rates: dict = {}
    cpu: dict = {}  # server CPU microseconds per request, best round
    try:
        for _ in range(args.rounds):
            for server in servers:
                before = process_cpu(server.proc.pid)
                rate = server.measure(args.duration, args.connections)
                used = process_cpu(server.proc.pid) - before
                us = used / max(rate * args.duration, 1) * 1e6
                rates[server.kind] = max(rate, rates.get(server.kind, 0.0))
                cpu[server.kind] = min(us, cpu.get(server.kind, float("inf")))
        checks = [s.check_counted(args.connections) for s in servers if s.metrics_url]
    finally:
        for server in servers:
            server.stop()
    print("  (us CPU: the server's own CPU time per request, from /proc)")
    for kind in kinds:
        extra = f"  = {rates[kind] * 100:,.0f} calls/s" if kind == "batch100" else ""
        if kind == "reactor+metrics" and rates.get("reactor"):
            extra = f"  = {rates[kind] / rates['reactor']:.1%} of reactor (goal >= 95%)"
        print(f"  {kind:15s} {rates[kind]:9,.0f} req/s {cpu[kind]:7.1f} us CPU{extra}")
    for check in checks:
        print(f"  reactor+metrics: {check}")
    bare, tx = rates.get("bare"), rates.get("txjsonrpc")
    print("goals:")
    if bare and "reactor" in rates:
        print(f"  reactor / bare        {rates['reactor'] / bare:6.1%}  (goal >= 85%)")
    if rates.get("bare-noform") and "reactor" in rates:
        print(
            f"  reactor / bare-noform {rates['reactor'] / rates['bare-noform']:6.1%}"
            "  (Site(parsePOSTFormSubmission=False))"
        )
    if tx and "reactor" in rates:
        print(f"  reactor / txjsonrpc   {rates['reactor'] / tx:6.2f}x (goal >= 1.1x)")
    if bare and "thread" in rates:
        print(f"  thread / bare         {rates['thread'] / bare:6.1%}  (goal >= 50%)")
    if "batch100" in rates:
        print(
            f"  batch of 100          {rates['batch100'] * 100:9,.0f} calls/s (goal >= 25,000)"
        )
    if rates.get("aiohttp-rpc") and "reactor" in rates:
        print(
            f"  reactor / aiohttp-rpc {rates['reactor'] / rates['aiohttp-rpc']:6.2f}x req/s,"
            f" {cpu['aiohttp-rpc'] / cpu['reactor']:5.2f}x by CPU per request"
            " (goal >= 1.3x)"
        )


if __name__ == "__main__":
    main()
