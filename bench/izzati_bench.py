"""
izzati endpoint benchmark: twistbridge side by side with the original izzati
1.2.3 Backend (Flask/Werkzeug) and a bare twisted.web resource (the ceiling).

    .venv/bin/python bench/izzati_bench.py [--seconds 5] [--upload-mib 200]

Servers: izzati 1.2.3; twistbridge with the callback in its thread pool (a
plain def, the default) and in the reactor (run_in="reactor"); a bare
twisted.web resource answering in the reactor (the ceiling) and from
Twisted's thread pool (the ceiling of a threaded callback).

Measures, for each server:
  - small forms/s: wrk, 2 threads, 50 keep-alive connections, POST / with a
    two-field urlencoded form (best of --rounds);
  - a 200 MiB multipart upload (one file, Content-Length known, streamed by
    the client): MB/s (best of --uploads) and the growth of the server's
    peak RSS (VmHWM) over all of them.

Every server runs for the whole benchmark and the rounds take them in
turn, so that changes in the machine's load hit all of them alike.  Each
server logs every request as it does by default (Werkzeug's request log,
twistbridge's access log; the bare resources log nothing).

Needs: wrk (Debian: apt-get install wrk) and the test extra (izzati==1.2.3,
Flask).  Every server binds 127.0.0.1 on a free port and is stopped at the
end.  Figures depend on the machine and its load: compare the columns of one
run, not runs on different days.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

from twistbridge.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1024 * 1024
BOUNDARY = "benchBoundary7MA4YWxkTrZu0gW"
FORM = "name=ann&tag=bench"

ORIGINAL = textwrap.dedent(
    """
    import sys
    from izzati import Backend

    def summary(text, data):
        return {"status": "ok", "text": text, "files": [[f.filename, f.stream.seek(0, 2)] for f in data]}

    Backend(summary).run(host="127.0.0.1", port=int(sys.argv[1]), use_reloader=False)
    """
)

# Werkzeug's FileStorage has no size: the callback seeks to the end of the
# spooled temporary file to learn it (without reading it into memory).

BARE = textwrap.dedent(
    """
    import json, sys
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Bare(Resource):
        isLeaf = True
        def render_POST(self, request):
            size = request.content.seek(0, 2)
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"status": "ok", "size": size}).encode()

    reactor.listenTCP(int(sys.argv[1]), Site(Bare(), parsePOSTFormSubmission=False),
                      interface="127.0.0.1")
    reactor.run()
    """
)

# The same, answering from Twisted's thread pool: the ceiling of a callback
# that runs in a thread (twistbridge's default for a plain def).
BARE_THREAD = textwrap.dedent(
    """
    import json, sys
    from twisted.internet import reactor, threads
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    class BareThread(Resource):
        isLeaf = True
        def render_POST(self, request):
            size = request.content.seek(0, 2)
            d = threads.deferToThread(lambda: {"status": "ok", "size": size})
            def done(result):
                request.setHeader(b"Content-Type", b"application/json")
                request.write(json.dumps(result).encode())
                request.finish()
            d.addCallback(done)
            return NOT_DONE_YET

    reactor.listenTCP(int(sys.argv[1]), Site(BareThread(), parsePOSTFormSubmission=False),
                      interface="127.0.0.1")
    reactor.run()
    """
)

WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = "{FORM}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""


def wait_up(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)  # sleep-ok: polling a server that is starting
    raise SystemExit(f"server on port {port} did not start")


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, name: str, argv: list, port: int, env: dict | None = None):
        self.name = name
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        wait_up(port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def twistbridge_server(name: str, app: str) -> Server:
    port = free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH")]))
    argv = [
        twistd, "-n", "--pidfile=", "--logfile=/dev/null", "bridge", "--app", app,
        "--port", str(port), "--igor-port", "none", "--bgpy-port", "none",
    ]  # fmt: skip
    return Server(name, argv, port, env)


def script_server(name: str, source: str) -> Server:
    port = free_port()
    return Server(name, [sys.executable, "-c", source, str(port)], port)


def small_forms(port: int, seconds: int, script: str) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c50",
            f"-d{seconds}s",
            "-s",
            script,
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"    ({errors.group(1)} non-2xx responses)", file=sys.stderr)
    return float(match.group(1)) if match else 0.0


def upload(port: int, size: int) -> float:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = os.urandom(MiB)

    def body():
        yield head
        for _ in range(size // MiB):
            yield block
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    conn.request(
        "POST",
        "/",
        body=body(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(len(head) + size + len(tail)),
        },
    )
    response = conn.getresponse()
    answer = response.read()
    elapsed = time.perf_counter() - start
    conn.close()
    if response.status != 200:
        raise SystemExit(f"upload answered {response.status}: {answer[:200]!r}")
    return size / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=int, default=5, help="wrk duration per server"
    )
    parser.add_argument(
        "--upload-mib", type=int, default=200, help="upload size in MiB"
    )
    parser.add_argument("--rounds", type=int, default=2, help="wrk rounds")
    parser.add_argument("--uploads", type=int, default=4, help="upload rounds")
    options = parser.parse_args()

    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(WRK_SCRIPT)
    script.close()
    plan = [
        ("izzati 1.2.3 (Flask)", lambda: script_server("izzati", ORIGINAL)),
        (
            "twistbridge (thread pool)",
            lambda: twistbridge_server("tb", "izzati_bench_app:bridge"),
        ),
        (
            "twistbridge (run_in=reactor)",
            lambda: twistbridge_server("tbr", "izzati_bench_app:reactor_bridge"),
        ),
        ("bare twisted.web (ceiling)", lambda: script_server("bare", BARE)),
        (
            "bare twisted.web + thread",
            lambda: script_server("bare-thread", BARE_THREAD),
        ),
    ]
    servers = []
    rates: dict = {}
    speeds: dict = {}
    growth: dict = {}
    try:
        for label, start in plan:
            servers.append((label, start()))
        # Rounds go over every server in turn, so that a change in the
        # machine's load hits them all alike; each figure is the best round.
        for _, server in servers:
            small_forms(server.port, 1, script.name)  # warm up
        for _ in range(options.rounds):
            for label, server in servers:
                rate = small_forms(server.port, options.seconds, script.name)
                rates[label] = max(rates.get(label, 0.0), rate)
        before = {label: vm_hwm_kib(server.process.pid) for label, server in servers}
        for _ in range(options.uploads):
            for label, server in servers:
                mbps = upload(server.port, options.upload_mib * MiB)
                speeds[label] = max(speeds.get(label, 0.0), mbps)
        for label, server in servers:
            growth[label] = (vm_hwm_kib(server.process.pid) - before[label]) / 1024
    finally:
        for _, server in servers:
            server.stop()
        os.unlink(script.name)
    rows = [(label, rates[label], speeds[label], growth[label]) for label, _ in plan]

    load = os.getloadavg()[0]
    print(f"\nizzati endpoint, {os.cpu_count()} cores, load average {load:.2f}")
    print(
        f"{'server':32} {'small forms/s':>14} {'upload MB/s':>12} {'RSS growth MiB':>15}"
    )
    for label, rate, mbps, growth in rows:
        print(f"{label:32} {rate:14.0f} {mbps:12.0f} {growth:15.1f}")
    original = rows[0]
    for (label, rate, mbps, _), (ceiling, top, _, _) in zip(rows[1:3], rows[4:2:-1]):
        print(
            f"{label}: {rate / original[1]:.1f}x the original's forms/s, "
            f"{mbps / original[2]:.2f}x its upload MB/s; "
            f"{rate / top:.0%} of {ceiling}'s forms/s"
        )


if __name__ == "__main__":
    main()
