"""
izzati endpoint benchmark: twistbridge side by side with the original izzati
1.2.3 Backend (Flask/Werkzeug) and bare twisted.web resources (the ceiling).

    .venv/bin/python bench/izzati_bench.py [--seconds 5] [--upload-mib 200]
    .venv/bin/python bench/izzati_bench.py --only upload file   # no wrk, ~1 min

Servers: izzati 1.2.3; twistbridge with the callback in its thread pool (a
plain def, the default) and in the reactor (run_in="reactor"), and (for the
upload) the same with file parts read through Python instead of spliced
into their temporary files (IZZATI_BENCH_SPLICE=0: what a connection that
cannot be spliced gets, such as TLS; the "before" of splicing); a bare
twisted.web resource answering in the reactor (the ceiling) and from
Twisted's thread pool (the ceiling of a threaded callback).  The bare
resources run under Site(parsePOSTFormSubmission=False) and read the body
as twisted.web does (into request.content, a temporary file past 100 kB).

Measures, for each server:
  - forms: small forms/s: wrk, 2 threads, 50 keep-alive connections, POST /
    with a two-field urlencoded form (best of --rounds);
  - upload: a 200 MiB multipart upload (one file, Content-Length known,
    streamed by the client): MB/s (best of --uploads), the server's CPU
    milliseconds per MiB (median), the growth of its peak RSS (VmHWM)
    over all of them, the share of each upload's time the server was
    running (busy; near 100 %: bound by its own CPU) and runnable but
    waiting for its core (queued: other work on that core), and the
    client's CPU milliseconds per MiB (medians);
  - file: a 200 MiB file response (--file-mib): twistbridge's file_return
    (callback in the reactor) beside a bare twisted.web static.File of the
    same file, MB/s (best of --uploads) and CPU ms per MiB (median).

The ratios to watch are printed last: twistbridge's upload MB/s over
the bare resource's, its file response MB/s over static.File's, both best
over best and the median of the rounds' ratios.

Every server runs on the first core and the client on the second (--no-pin:
wherever the system puts them); before each upload or file response the
bench waits until the servers are idle (what the last one left, such as
freeing a 200 MiB temporary file, is done), and it counts each server's CPU
in nanoseconds (/proc/<pid>/task/*/schedstat).

Every server runs for the whole benchmark and the rounds take them in
turn, so that changes in the machine's load hit all of them alike.  Each
server logs every request as it does by default (Werkzeug's request log,
twistbridge's access log; the bare resources log nothing).

Needs: wrk (Debian: apt-get install wrk) for the forms and the test extra
(izzati==1.2.3, Flask).  Every server binds 127.0.0.1 on a free port and is
stopped at the end.  Figures depend on the machine and its load: compare
the columns of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
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

# The ceiling of a file response: twisted.web's own static.File.
BARE_FILE = textwrap.dedent(
    """
    import os, sys
    from twisted.internet import reactor
    from twisted.web.server import Site
    from twisted.web.static import File

    root = File(os.path.dirname(sys.argv[2]))
    reactor.listenTCP(int(sys.argv[1]), Site(root), interface="127.0.0.1")
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


def cpu_seconds(pid: int, field: int = 0) -> float:
    """The CPU time of every thread of process C{pid} so far, in seconds
    (C{field} 1: the time they waited for a core while runnable instead).

    Summed from each thread's C{/proc/<pid>/task/<tid>/schedstat}
    (nanoseconds) rather than read from C{/proc/<pid>/stat} (whole clock
    ticks, 10 ms: a tenth of the CPU of a 200 MiB upload)."""
    total = 0
    tasks = f"/proc/{pid}/task"
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/schedstat") as f:
                total += int(f.read().split()[field])
        except (OSError, IndexError, ValueError):
            pass  # the thread ended meanwhile
    return total / 1e9


def wait_idle(pids: list, timeout: float = 10.0) -> None:
    """Wait until the processes C{pids} use (almost) no CPU: what the last
    request left to do (closing and freeing a 200 MiB temporary file, say)
    is done before the next one is measured on the same core."""
    deadline = time.monotonic() + timeout
    last = sum(cpu_seconds(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(0.05)  # sleep-ok: sampling the servers' CPU time
        now = sum(cpu_seconds(pid) for pid in pids)
        if now - last < 0.0005:
            return
        last = now


#: The cores every server runs on ("--pin": the first of two), or None.
SERVER_CPUS: set | None = None


def _pin_server() -> None:
    if SERVER_CPUS:
        os.sched_setaffinity(0, SERVER_CPUS)


class Server:
    def __init__(self, name: str, argv: list, port: int, env: dict | None = None):
        self.name = name
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_pin_server if SERVER_CPUS else None,
        )
        wait_up(port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def twistbridge_server(name: str, app: str, **extra: str) -> Server:
    port = free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH")]))
    argv = [
        twistd, "-n", "--pidfile=", "--logfile=/dev/null", "bridge", "--app", app,
        "--port", str(port), "--igor-port", "none", "--bgpy-port", "none",
    ]  # fmt: skip
    return Server(name, argv, port, env)


def script_server(name: str, source: str, *args: str) -> Server:
    port = free_port()
    return Server(name, [sys.executable, "-c", source, str(port), *args], port)


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


def upload_body(size: int) -> tuple:
    """A multipart body of one C{size}-byte file, in a temporary file:
    C{(the open file, its length)}."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    body = tempfile.TemporaryFile()
    body.write(head)
    block = os.urandom(MiB)
    for _ in range(size // MiB):
        body.write(block)
    body.write(tail)
    body.flush()
    return body, body.tell()


def upload(port: int, body: tuple) -> float:
    """POST the multipart C{body} (from L{upload_body}) with sendfile; MB/s.

    The client sends the body with the kernel's sendfile: its own CPU stays
    small beside the server's, whichever server it measures."""
    data, length = body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    conn.putrequest("POST", "/")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    data.seek(0)
    assert conn.sock is not None
    conn.sock.sendfile(data)
    response = conn.getresponse()
    answer = response.read()
    elapsed = time.perf_counter() - start
    conn.close()
    if response.status != 200:
        raise SystemExit(f"upload answered {response.status}: {answer[:200]!r}")
    return length / elapsed / 1e6


def download(port: int, method: str, size: int) -> float:
    """Fetch a file response of C{size} bytes (POST / or GET /<file>); MB/s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    if method == "POST":
        conn.request(
            "POST",
            "/",
            body=FORM,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        conn.request("GET", method[len("GET ") :])
    response = conn.getresponse()
    buffer = bytearray(MiB)
    view = memoryview(buffer)
    got = 0
    while True:
        n = response.readinto(view)
        if not n:
            break
        got += n
    elapsed = time.perf_counter() - start
    conn.close()
    if response.status != 200 or got != size:
        raise SystemExit(f"download answered {response.status} with {got} bytes")
    return size / elapsed / 1e6


def median(values: list) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=int, default=5, help="wrk duration per server"
    )
    parser.add_argument(
        "--upload-mib", type=int, default=200, help="upload size in MiB"
    )
    parser.add_argument(
        "--file-mib", type=int, default=200, help="file response size in MiB"
    )
    parser.add_argument("--rounds", type=int, default=2, help="wrk rounds")
    parser.add_argument(
        "--uploads", type=int, default=4, help="upload and file response rounds"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["forms", "upload", "file"],
        help="these measures only (default: all three)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE,...",
        help="one more upload column: twistbridge (run_in=reactor) with these "
        "settings of twistbridge.izzati._splice (e.g. 'turn 1M:TURN=1048576')",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="leave the servers and the client unpinned (default: every "
        "server on the first core, the client on the second)",
    )
    options = parser.parse_args()
    parts = set(options.only or ["forms", "upload", "file"])
    global SERVER_CPUS
    cores = sorted(os.sched_getaffinity(0))
    pinned = not options.no_pin and len(cores) >= 2
    if pinned:
        # The servers on one core, the client on the other: neither takes
        # the other's core.
        SERVER_CPUS = {cores[0]}
        os.sched_setaffinity(0, {cores[1]})

    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(WRK_SCRIPT)
    script.close()
    served = tempfile.NamedTemporaryFile(suffix=".bin", delete=False)
    block = os.urandom(MiB)
    for _ in range(options.file_mib if "file" in parts else 0):
        served.write(block)
    served.close()
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
            "twistbridge (reactor, no splice)",
            lambda: twistbridge_server(
                "tbn", "izzati_bench_app:reactor_bridge", IZZATI_BENCH_SPLICE="0"
            ),
        ),
        (
            "bare twisted.web + thread",
            lambda: script_server("bare-thread", BARE_THREAD),
        ),
    ]
    file_plan = [
        (
            "twistbridge file_return",
            "POST",
            lambda: twistbridge_server(
                "tbf", "izzati_bench_app:file_bridge", IZZATI_BENCH_FILE=served.name
            ),
        ),
        (
            "bare static.File (ceiling)",
            f"GET /{os.path.basename(served.name)}",
            lambda: script_server("bare-file", BARE_FILE, served.name),
        ),
    ]
    if not parts & {"forms", "upload"}:
        plan = []
    if "upload" in parts and "forms" not in parts:
        # The upload ratio needs only these two, and the same without
        # splicing (what a connection that cannot be spliced gets).
        plan = [plan[2], plan[3], plan[4]]
    for variant in options.variant if "upload" in parts else []:
        label, _, settings = variant.partition(":")
        plan.append(
            (
                label,
                lambda settings=settings: twistbridge_server(
                    "tbv",
                    "izzati_bench_app:reactor_bridge",
                    IZZATI_BENCH_SPLICING=settings,
                ),
            )
        )
    if "file" not in parts:
        file_plan = []
    servers = []
    file_servers = []
    rates: dict = {}
    speeds: dict = {}
    cpu: dict = {}
    busy: dict = {}
    starved: dict = {}
    client: dict = {}
    growth: dict = {}
    file_speeds: dict = {}
    file_cpu: dict = {}
    try:
        for label, start in plan:
            servers.append((label, start()))
        for label, method, start in file_plan:
            file_servers.append((label, method, start()))
        # Rounds go over every server in turn, so that a change in the
        # machine's load hits them all alike; each figure is the best round.
        if "forms" in parts:
            for _, server in servers:
                small_forms(server.port, 1, script.name)  # warm up
            for _ in range(options.rounds):
                for label, server in servers:
                    rate = small_forms(server.port, options.seconds, script.name)
                    rates[label] = max(rates.get(label, 0.0), rate)
        every = [server.process.pid for _, server in servers]
        every += [server.process.pid for _, _, server in file_servers]
        if "upload" in parts:
            body = upload_body(options.upload_mib * MiB)
            pids = {label: server.process.pid for label, server in servers}
            before = {label: vm_hwm_kib(pid) for label, pid in pids.items()}
            for _ in range(options.uploads):
                for label, server in servers:
                    wait_idle(every)
                    cpu0, mine = cpu_seconds(pids[label]), cpu_seconds(os.getpid())
                    delay = cpu_seconds(pids[label], 1)
                    mbps = upload(server.port, body)
                    used = cpu_seconds(pids[label]) - cpu0
                    delay = cpu_seconds(pids[label], 1) - delay
                    mine = cpu_seconds(os.getpid()) - mine
                    speeds.setdefault(label, []).append(mbps)
                    cpu.setdefault(label, []).append(1000 * used / options.upload_mib)
                    # The share of the upload's time the server was running
                    # (near 100 %: bound by its own CPU; lower: waiting for
                    # the client or for its core), and the client's CPU.
                    wall = options.upload_mib * MiB / 1e6 / mbps
                    busy.setdefault(label, []).append(100 * used / wall)
                    starved.setdefault(label, []).append(100 * delay / wall)
                    client.setdefault(label, []).append(
                        1000 * mine / options.upload_mib
                    )
            for label, pid in pids.items():
                growth[label] = (vm_hwm_kib(pid) - before[label]) / 1024
            body[0].close()
        if "file" in parts:
            size = options.file_mib * MiB
            for _, method, server in file_servers:
                download(server.port, method, size)  # warm up (page cache)
            for _ in range(options.uploads):
                for label, method, server in file_servers:
                    pid = server.process.pid
                    wait_idle(every)
                    cpu0 = cpu_seconds(pid)
                    mbps = download(server.port, method, size)
                    used = cpu_seconds(pid) - cpu0
                    file_speeds.setdefault(label, []).append(mbps)
                    file_cpu.setdefault(label, []).append(
                        1000 * used / options.file_mib
                    )
    finally:
        for _, server in servers:
            server.stop()
        for _, _, server in file_servers:
            server.stop()
        os.unlink(script.name)
        os.unlink(served.name)

    load = os.getloadavg()
    where = (
        f"servers on core {cores[0]}, client on core {cores[1]}"
        if pinned
        else "unpinned"
    )
    print(
        f"\nizzati endpoint, {os.cpu_count()} cores ({where}), load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    if servers:
        print(
            f"{'server':32} {'small forms/s':>14} {'upload MB/s':>12} "
            f"{'CPU ms/MiB':>11} {'RSS growth MiB':>15} {'busy %':>7} "
            f"{'queued %':>9} {'client ms/MiB':>14}"
        )
        for label, _ in servers:
            rate = f"{rates[label]:14.0f}" if label in rates else f"{'-':>14}"
            if label in speeds:
                up = f"{max(speeds[label]):12.0f} {median(cpu[label]):11.2f} "
                up += f"{growth[label]:15.1f} {median(busy[label]):7.0f} "
                up += f"{median(starved[label]):9.0f} {median(client[label]):14.2f}"
            else:
                up = f"{'-':>12} {'-':>11} {'-':>15} {'-':>7} {'-':>9} {'-':>14}"
            print(f"{label:32} {rate} {up}")
    if file_servers:
        print(f"{'file response':32} {'MB/s':>14} {'CPU ms/MiB':>12}")
        for label, _, _ in file_servers:
            print(
                f"{label:32} {max(file_speeds[label]):14.0f} "
                f"{median(file_cpu[label]):12.2f}"
            )
    original = "izzati 1.2.3 (Flask)"
    if original in rates and "forms" in parts:
        for label, ceiling in (
            ("twistbridge (thread pool)", "bare twisted.web + thread"),
            ("twistbridge (run_in=reactor)", "bare twisted.web (ceiling)"),
        ):
            line = (
                f"{label}: {rates[label] / rates[original]:.1f}x the original's forms/s"
            )
            if original in speeds:
                line += f", {ratio(speeds, label, original)[0]:.2f}x its upload MB/s"
            print(f"{line}; {rates[label] / rates[ceiling]:.0%} of {ceiling}'s forms/s")
    tb, bare = "twistbridge (run_in=reactor)", "bare twisted.web (ceiling)"
    static = "bare static.File (ceiling)"
    lines = [("upload: twistbridge", tb, speeds, cpu, bare, "the bare resource's")]
    lines += [
        (f"upload, {variant.partition(':')[0]}:", variant.partition(":")[0])
        + (speeds, cpu, bare, "the bare resource's")
        for variant in options.variant
    ]
    lines.append(
        ("upload without splicing:", "twistbridge (reactor, no splice)")
        + (speeds, cpu, bare, "the bare resource's")
    )
    lines.append(
        ("file response: twistbridge", "twistbridge file_return")
        + (file_speeds, file_cpu, static, "static.File's")
    )
    for title, label, mbps, used, reference, whose in lines:
        if label not in mbps or reference not in mbps:
            continue
        best, middle = ratio(mbps, label, reference)
        line = (
            f"{title} {best:.2f}x {whose} MB/s (best), {middle:.2f}x (median of "
            f"rounds), {median(used[label]) / median(used[reference]):.2f}x its "
            f"CPU per MiB"
        )
        if label == tb:
            line += f", RSS growth {growth[tb]:.1f} MiB"
        print(line)


def ratio(speeds: dict, label: str, other: str) -> tuple:
    """C{label}'s MB/s over C{other}'s: C{(best over best, the median of the
    rounds' ratios)} (each round measures both, one after the other)."""
    rounds = [a / b for a, b in zip(speeds[label], speeds[other])]
    return max(speeds[label]) / max(speeds[other]), median(rounds)


if __name__ == "__main__":
    main()
