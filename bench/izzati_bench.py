"""
izzati endpoint benchmark: twistbridge side by side with the original izzati
1.2.3 Backend (Flask/Werkzeug) and a bare twisted.web resource (the ceiling).

    .venv/bin/python bench/izzati_bench.py [--seconds 5] [--upload-mib 200]

Measures, for each server:
  - small forms/s: wrk, 2 threads, 50 keep-alive connections, POST / with a
    two-field urlencoded form;
  - a 200 MiB multipart upload (one file, Content-Length known, streamed by
    the client): MB/s (best of three) and the growth of the server's peak
    RSS (VmHWM) over the three.

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

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1024 * 1024
BOUNDARY = "benchBoundary7MA4YWxkTrZu0gW"
FORM = "name=ann&tag=bench"

ORIGINAL = textwrap.dedent(
    """
    import logging, sys
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
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

WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = "{FORM}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    ]
    rows = []
    try:
        for label, start in plan:
            server = start()
            try:
                # Warm up (imports, thread pool) before measuring.
                small_forms(server.port, 1, script.name)
                rate = small_forms(server.port, options.seconds, script.name)
                before = vm_hwm_kib(server.process.pid)
                mbps = max(
                    upload(server.port, options.upload_mib * MiB) for _ in range(3)
                )
                growth = (vm_hwm_kib(server.process.pid) - before) / 1024
            finally:
                server.stop()
            rows.append((label, rate, mbps, growth))
            print(f"  done: {label}", file=sys.stderr)
    finally:
        os.unlink(script.name)

    load = os.getloadavg()[0]
    print(f"\nizzati endpoint, {os.cpu_count()} cores, load average {load:.2f}")
    print(
        f"{'server':32} {'small forms/s':>14} {'upload MB/s':>12} {'RSS growth MiB':>15}"
    )
    for label, rate, mbps, growth in rows:
        print(f"{label:32} {rate:14.0f} {mbps:12.0f} {growth:15.1f}")
    original = rows[0]
    for label, rate, mbps, _ in rows[1:3]:
        print(
            f"{label}: {rate / original[1]:.1f}x the original's forms/s, "
            f"{mbps / original[2]:.2f}x its upload MB/s"
        )


if __name__ == "__main__":
    main()
