"""
Attacks on one daemon serving all four protocols, one at a time, each
measured from the outside.

    .venv/bin/python bench/attacks.py            # full sizes (a few minutes)
    .venv/bin/python bench/attacks.py --quick    # smaller sizes (under a minute)
    .venv/bin/python bench/attacks.py --only form_16MB_urlencoded,slowloris_headers --report-only

Starts `twistd -n bridge --app attacks_app:bridge` (the demo app plus three
Igor actions that let the session attack observe itself) with a bgpy token,
on free ports, and runs each attack (bench/attack_cases.py for HTTP,
bench/attack_wire.py for bgpy and Igor) in a process of its own, while
threads of this process keep probing as well-behaved clients: GET /health
every 50 ms, and in a loop a JSON-RPC `add`, an Igor `echo` (on
/ws and on the Igor port), a bgpy JSON-lines EXEC and an izzati upload.
Prints one row per attack: server alive after it, /health p50/p99/max during
it (ms), peak RSS growth (MiB), errors of the well-behaved clients, the
server's CPU seconds (for information), and what the attacker got.  A value
marked `!` misses its goal (alive; /health max < 250 ms; RSS growth
< 64 MiB; no errors; the attacker clearly refused).
A server that died is restarted on the same ports for the next attack.
Exit status 1 when any row misses a goal, unless --report-only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import sys
import threading
import time

import requests
import websocket

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import attack_cases as cases  # noqa: E402
import attack_wire as wire  # noqa: E402

from twistbridge.testing import BridgeProcess, JsonLinesClient, free_port  # noqa: E402

MiB = 1024 * 1024
HEALTH_MAX_MS = 250
RSS_MAX_MIB = 64

#: name, function, full size, quick size.
ATTACKS = [
    ("bgpy_deep_tuple_key", wire.deep_tuple_key, 180_000, 30_000),
    ("bgpy_memo_30M", wire.memo_index, 30_000_000, 3_000_000),
    ("bgpy_memo_2^32-1", wire.memo_index, 2**32 - 1, 2**32 - 1),
    ("bgpy_24x5.7MB_preauth", wire.pipelined_frames, 24, 4),
    ("bgpy_len_10^12", wire.huge_length_header, 10**12, 10**12),
    ("bgpy_16MB_json_line", wire.bgpy_big_json_line, 16 * MiB - 64, 2 * MiB),
    ("bgpy_deep_json", wire.deep_json_bgpy, 100_000, 10_000),
    ("form_16MB_urlencoded", cases.form_body, 16 * MiB, 2 * MiB),
    ("rpc_16MB_empty_lists", cases.rpc_batch_of_empties, 16 * MiB - 16, 2 * MiB),
    ("izzati_16MB_json", cases.izzati_json_body, 16 * MiB - 16, 2 * MiB),
    ("rpc_deep_json", cases.deep_json_rpc, 100_000, 10_000),
    ("rpc_content_len_10^15", cases.huge_content_length, 10**15, 10**15),
    ("chunked_200M_bgpy_exec", cases.chunked_bgpy_exec, 200 * MiB, 20 * MiB),
    ("chunked_120M_unknown", cases.chunked_unknown_path, 120 * MiB, 12 * MiB),
    ("igor_30MB_handshake", wire.igor_huge_handshake, 30 * MiB, 3 * MiB),
    ("ws_200k_fragments", wire.ws_fragments, 200_000, 20_000),
    ("igor_16MB_message", wire.igor_big_message, 16 * MiB - 64, 2 * MiB),
    ("igor_deep_json", wire.deep_json_igor, 100_000, 10_000),
    ("igor_session_sharing", wire.igor_session_sharing, 0, 0),
    ("foreign_host", cases.foreign_host, 0, 0),
    # The body rate is averaged over --idle-timeout (60 s by default).
    ("slow_body_1B_per_2s", cases.slow_body, 75, 8),
    ("slowloris_headers", cases.slowloris, 25, 8),
    ("many_connections", cases.many_connections, 522, 74),
]


class Server:
    """The daemon under attack, restartable on the same ports."""

    def __init__(self, quick):
        self.token = secrets.token_hex(16)
        self.args = [
            "--app",
            "attacks_app:bridge",
            "--shutdown-timeout",
            "2",
            "--port",
            str(free_port()),
            "--igor-port",
            str(free_port()),
            "--bgpy-port",
            str(free_port()),
        ]
        if quick:
            self.args += [
                "--idle-timeout",
                "4",
                "--header-timeout",
                "3",
                "--max-connections-per-client",
                "64",
                "--message-timeout",
                "5",
            ]
        self.env = dict(os.environ, BGPY_TOKEN=self.token, PYTHONPATH=HERE)
        self.process = None
        self.restarts = 0

    def start(self):
        self.process = BridgeProcess(self.args, env=self.env).start()
        self.pid = self.process.process.pid
        self.addresses = dict(self.process.addresses)

    def alive(self):
        if self.process.process.poll() is not None:
            return False
        try:
            return (
                requests.get(
                    f"http://{self.addresses['http']}/health", timeout=10
                ).status_code
                == 200
            )
        except requests.RequestException:
            return False

    def status(self, key):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def cpu_seconds(self):
        """User plus system CPU time the server used so far."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def reset_peak(self):
        """Reset VmHWM so that it reads the peak of the next attack alone."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False


class Probes:
    """The well-behaved clients: samples and errors, with their time."""

    def __init__(self, server):
        self.server = server
        self.lock = threading.Lock()
        self.health = []  # (start, latency ms)
        self.errors = []  # (time, text)
        self.rss = []  # (time, KiB)
        self.stop = threading.Event()

    def settle(self, timeout=30.0):
        """Wait (bounded) until /health answered a request sent from now on."""
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any(s >= since for s, _ in self.health):
                    return
            time.sleep(0.05)  # polling the samples, bounded by the deadline

    def error(self, what):
        with self.lock:
            self.errors.append((time.monotonic(), what))

    def run(self, name, func):
        def loop():
            while not self.stop.is_set():
                try:
                    func()
                except Exception as e:
                    self.error(f"{name}: {type(e).__name__}: {str(e)[:80]}")
                    self.stop.wait(0.2)

        t = threading.Thread(target=loop, name=name, daemon=True)
        t.start()
        return t

    def start(self):
        addr = lambda: self.server.addresses  # noqa: E731  (changes on restart)
        self.run("health", lambda: self.health_loop(addr))
        self.run("rss", self.rss_loop)
        self.run("jsonrpc", lambda: self.rpc_loop(addr()))
        self.run("igor", lambda: self.igor_loop(f"ws://{addr()['igor']}/"))
        self.run("igor-ws", lambda: self.igor_loop(f"ws://{addr()['http']}/ws"))
        self.run("bgpy", lambda: self.bgpy_loop(addr()))
        self.run("izzati", lambda: self.izzati_loop(addr()))

    def health_loop(self, addr):
        host, port = addr()["http"].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                with self.lock:
                    self.health.append((started, (time.monotonic() - started) * 1000))
                if r.status != 200:
                    self.error(f"health: {r.status}")
                self.stop.wait(max(0.0, 0.05 - (time.monotonic() - started)))
        finally:
            conn.close()

    def rss_loop(self):
        while not self.stop.is_set():
            kib = self.server.status("VmRSS")
            with self.lock:
                self.rss.append((time.monotonic(), kib))
            self.stop.wait(0.02)

    def rpc_loop(self, addr):
        session = requests.Session()
        n = 0
        while not self.stop.is_set():
            n += 1
            r = session.post(
                f"http://{addr['http']}/rpc",
                timeout=60,
                json={"jsonrpc": "2.0", "method": "add", "params": [n, 1], "id": n},
            )
            if r.status_code != 200 or r.json().get("result") != n + 1:
                self.error(f"jsonrpc: {r.status_code} {r.text[:80]}")
            self.stop.wait(0.1)

    def igor_loop(self, url):
        ws = websocket.create_connection(url, timeout=60)
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                ws.send(json.dumps({"streamId": n, "action": "echo", "data": {"n": n}}))
                got = closed = False
                while not closed:
                    msg = json.loads(ws.recv())
                    if msg.get("streamId") == "clock":
                        continue
                    if msg.get("streamId") != n or "error" in msg:
                        raise RuntimeError(f"unexpected {str(msg)[:80]}")
                    got = got or msg.get("data") == {"n": n}
                    closed = msg.get("close") is True
                if not got:
                    raise RuntimeError("stream closed without the echo")
                self.stop.wait(0.1)
        finally:
            ws.close()

    def bgpy_loop(self, addr):
        with JsonLinesClient(addr["bgpy"], timeout=60) as client:
            answer = client.call("AUTH", token=self.server.token)
            if answer.get("type") != "OK":
                raise RuntimeError(f"AUTH answered {answer}")
            while not self.stop.is_set():
                answer = client.call("EXEC", command="increase", value_change=1)
                if answer.get("type") != "OK":
                    raise RuntimeError(f"EXEC answered {answer}")
                self.stop.wait(0.1)

    def izzati_loop(self, addr):
        session = requests.Session()
        while not self.stop.is_set():
            r = session.post(
                f"http://{addr['http']}/",
                data={"k": "v"},
                files={"file": ("a.txt", b"hello")},
                timeout=60,
            )
            if r.status_code != 200 or r.json().get("files") != [
                {"filename": "a.txt", "size": 5}
            ]:
                self.error(f"izzati: {r.status_code} {r.text[:80]}")
            self.stop.wait(0.1)


def attack_child(func, addresses, size, conn):
    """The attacker process: run one attack, send its row back."""
    try:
        conn.send(func(addresses, size))
    except Exception as e:
        conn.send({"got": cases.short(f"<{type(e).__name__}: {e}>"), "refused": False})


def run_attack(server, probes, name, func, size, timeout):
    """One attack: its row of the table (a dict)."""
    ctx = multiprocessing.get_context("spawn")
    before = server.status("VmRSS")
    cpu_before = server.cpu_seconds()
    peak_reset = server.reset_peak()
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=attack_child, args=(func, server.addresses, size, sender), daemon=True
    )
    started = time.monotonic()
    child.start()
    result = None
    if receiver.poll(timeout):
        try:
            result = receiver.recv()
        except EOFError:
            pass
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()
    result = result or {
        "got": f"<attacker gave nothing in {timeout}s>",
        "refused": False,
    }
    ended = time.monotonic()
    # The window ends when /health has answered a request sent after the attack.
    deadline = ended + 60
    while time.monotonic() < deadline and server.process.process.poll() is None:
        with probes.lock:
            if any(s >= ended for s, _ in probes.health):
                break
        time.sleep(0.05)  # polling the prober's samples, bounded by the deadline
    end = time.monotonic() + 0.3
    time.sleep(0.3)  # sleep-ok: errors of calls already under way land in the window
    hwm = server.status("VmHWM") if peak_reset else 0
    cpu = max(0.0, server.cpu_seconds() - cpu_before)
    alive = server.alive()
    with probes.lock:
        lat = sorted(ms for s, ms in probes.health if started <= s <= end)
        errors = [e for t, e in probes.errors if started <= t <= end]
        rss = [k for t, k in probes.rss if started <= t <= end]
    peak = max([hwm, *rss]) if rss or hwm else before
    row = {
        "attack": name,
        "alive": alive,
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "max": lat[-1] if lat else None,
        "rss": (peak - before) / 1024,
        "errors": len(errors),
        "error_samples": errors[:3],
        "got": result["got"],
        "refused": bool(result["refused"]),
        "seconds": ended - started,
        "cpu": cpu,
    }
    if not alive:
        code = server.process.process.poll()
        if code is not None:
            died = f"signal {-code}" if code < 0 else f"exit {code}"
            row["got"] = cases.short(f"[server {died}] {row['got']}")
        server.process.stop(5)
        server.restarts += 1
        server.start()
        row["restarted"] = True
        probes.settle()
    return row


def pct(values, p):
    """The C{p}th percentile of sorted C{values}."""
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def misses(row):
    """The goals C{row} misses."""
    missed = []
    if not row["alive"]:
        missed.append("alive")
    if row["max"] is None or row["max"] >= HEALTH_MAX_MS:
        missed.append("max")
    if row["rss"] >= RSS_MAX_MIB:
        missed.append("rss")
    if row["errors"]:
        missed.append("errors")
    if not row["refused"]:
        missed.append("got")
    return missed


def fmt_ms(v):
    return "-" if v is None else f"{v:.0f}"


def print_table(rows):
    header = f"{'attack':<24} {'alive':<5} {'p50':>6} {'p99':>7} {'max':>7} {'rss+MiB':>8} {'errs':>5} {'cpu s':>6}  attacker got"
    print(header)
    print("-" * len(header + " " * 30))
    for row in rows:
        missed = set(misses(row))

        def mark(key, text, missed=missed):
            return text + ("!" if key in missed else " ")

        print(
            f"{row['attack']:<24} {mark('alive', 'yes' if row['alive'] else 'NO'):<5} "
            f"{fmt_ms(row['p50']):>6} {fmt_ms(row['p99']):>7} {mark('max', fmt_ms(row['max'])):>8}"
            f"{mark('rss', format(row['rss'], '.0f')):>8} {mark('errors', str(row['errors'])):>5}"
            f" {row['cpu']:>6.1f}  {mark('got', row['got'])}"
        )
    failed = [r for r in rows if misses(r)]
    print(
        f"\n{len(rows) - len(failed)}/{len(rows)} rows within their goals "
        f"(alive, /health max < {HEALTH_MAX_MS} ms, RSS growth < {RSS_MAX_MIB} MiB, "
        f"no errors, attacker refused); '!' marks a miss."
    )
    for row in rows:
        for sample in row["error_samples"]:
            print(f"  {row['attack']}: {sample}")
    return failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller attack sizes (under a minute)"
    )
    parser.add_argument("--only", default="", help="comma-separated attack names")
    parser.add_argument(
        "--report-only", action="store_true", help="exit 0 even when goals are missed"
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    chosen = [a for a in ATTACKS if not args.only or a[0] in args.only.split(",")]
    if not chosen:
        parser.error(f"--only names none of: {', '.join(a[0] for a in ATTACKS)}")
    server = Server(args.quick)
    server.start()
    probes = Probes(server)
    probes.start()
    rows = []
    try:
        time.sleep(1.0)  # sleep-ok: a baseline second of probes before the first attack
        for name, func, full, quick in chosen:
            size = quick if args.quick else full
            row = run_attack(server, probes, name, func, size, timeout=120)
            print(
                f"# {name}: {row['seconds']:.1f}s, got {row['got']}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    finally:
        probes.stop.set()
        server.process.stop(10)
    print()
    failed = print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if args.report_only or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
