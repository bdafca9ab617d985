"""
`twistd -n bridge --workers 2 --broker redis://...`: real worker processes
sharing the listening sockets, a real redis-server, real clients.
"""

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests
from jsonrpcclient import Ok, parse, request

from twistbridge.tap import Options
from twistbridge.testing import (
    BridgeProcess,
    free_port,
    process_alive,
    twistd_path,
    wait_for,
)

from .broker import conftest as _broker  # its redis-server and Igor listener
from .conftest import APPS, apps_environ

#: The databases of the module's redis-server (Redis has 16), taken in turn.
_DATABASES = itertools.cycle(range(16))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A redis-server of this module's own (never the system's)."""
    server = _broker.started_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.kill()


@pytest.fixture
def broker(redis_server):
    """
    The URL of an emptied database of the module's redis-server, another
    than the last test's: nothing an earlier server left (a lease a killed
    worker held until it expires) is seen.
    """
    db = next(_DATABASES)
    assert redis_server.command("FLUSHDB", db=db) == b"+OK"
    return f"redis://127.0.0.1:{redis_server.port}/{db}"


def workers(broker, app="workers_app:bridge", n=2):
    """The app under --workers N (N None: as many as the app asks for)."""
    count = [] if n is None else ["--workers", str(n)]
    return BridgeProcess(
        ["--app", app, *count, "--broker", broker],
        env=apps_environ(),
        closed=("igor", "bgpy"),
    )


def call(server, method, *params, timeout=10):
    response = requests.post(
        server.url("/rpc"), json=request(method, params=list(params)), timeout=timeout
    )
    assert response.status_code == 200
    result = parse(response.json())
    assert isinstance(result, Ok), result
    return result.result


def children(pid):
    """The process ids whose parent is C{pid}."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def workers_of(server):
    """The worker processes of the supervisor (its twistd children)."""
    return [
        pid
        for pid in children(server.process.pid)
        if b"twistbridge._reloadchild" in open(f"/proc/{pid}/cmdline", "rb").read()
    ]


def seen_pids(server, wanted, timeout=30, ask=None):
    """
    Call C{pid} on fresh connections (C{ask()} does, if given) until every
    pid of C{wanted} answered.
    """
    seen = set()

    def all_seen():
        seen.add(call(server, "pid") if ask is None else ask())
        return set(wanted) <= seen

    wait_for(all_seen, timeout, interval=0, what=f"answers from {sorted(wanted)}")
    return seen


def unix_call(path, method):
    """A JSON-RPC call over the UNIX socket C{path}, on a new connection."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(path)

    connection = UnixConnection("localhost")
    try:
        body = json.dumps(request(method))
        connection.request("POST", "/rpc", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())["result"]
    finally:
        connection.close()


@pytest.mark.long
def test_workers_notify_log_to_the_file_replace_a_killed_one_and_drain_on_sigterm(
    broker, tmp_path
):
    """
    One supervisor under C{-n --logfile}, with systemd's C{NOTIFY_SOCKET}:
    systemd hears from the supervisor alone, both workers log to the file
    and answer, a killed worker is replaced, and SIGTERM drains every worker.
    """
    logfile = tmp_path / "bridge.log"
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    server = workers(broker)
    server.twistd_args = ["-n", "--logfile", str(logfile)]
    server.env["NOTIFY_SOCKET"] = path
    server.process = subprocess.Popen(
        server.command(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=server.env,
    )
    try:
        ready = dict(
            line.split("=", 1) for line in sock.recv(4096).decode().splitlines()
        )
        assert ready == {
            "READY": "1",
            "MAINPID": str(server.process.pid),
            "STATUS": "2 workers",
        }
        log = wait_for(
            lambda: (
                logfile.exists()
                and (t := logfile.read_text()).count("http listening on") == 2
                and t
            ),
            20,
            what="both workers' listeners in the log file",
        )
        assert "worker 1: " in log and "worker 2: " in log
        server.addresses["http"] = re.search(r"http listening on (\S+)", log).group(1)

        pids = wait_for(lambda: len(workers_of(server)) == 2 and workers_of(server), 15)
        assert server.process.pid not in pids
        assert seen_pids(server, pids) == set(pids)
        health = wait_for(
            lambda: (
                (h := requests.get(server.url("/health"), timeout=5).json())
                and h["status"] == "ok"
                and h
            ),
            15,
            what="a worker's broker connected",
        )
        assert health["worker"]["pid"] in pids
        assert health["worker"]["index"] in (1, 2)

        # A killed worker is replaced.
        victim, survivor = pids
        os.kill(victim, signal.SIGKILL)

        def two_without_the_victim():
            # (one reading of the worker list: it changes while a worker starts)
            workers = workers_of(server)
            return workers if len(workers) == 2 and victim not in workers else None

        replaced = wait_for(two_without_the_victim, 30, what="a new worker")
        (new,) = set(replaced) - {survivor}
        assert seen_pids(server, [survivor, new]) == {survivor, new}
        assert victim not in seen_pids(server, [new])
        wait_for(
            lambda: f"(pid {victim}) exited with status -9" in logfile.read_text(),
            10,
            what="the death logged",
        )
        assert logfile.read_text().count(f"(pid {victim}) exited") == 1
        assert server.process.poll() is None

        # SIGTERM drains every worker, with slow calls in flight on them.
        pids = [survivor, new]
        answers = {}

        def slow(key):
            answers[key] = call(server, "slow", 2, timeout=30)

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        # Each slow call is on a worker once the worker logged its start.
        wait_for(
            lambda: logfile.read_text().count("slow call started") == 6,
            15,
            what="the slow calls in flight",
        )
        server.signal(signal.SIGTERM)
        # What comes next is the supervisor's STOPPING=1: no worker spoke.
        assert sock.recv(4096) == b"STOPPING=1"
        for t in threads:
            t.join(30)
        assert server.process.wait(30) == 0
        assert server.process.stdout.read() == b""
    finally:
        server.stop()
        sock.close()
    assert sorted(answers) == list(range(6))
    assert {a[1] for a in answers.values()} == {"done"}
    assert {a[0] for a in answers.values()} <= set(pids)
    assert not any(process_alive(pid) for pid in [victim, *pids])
    assert "workers: every worker exited" in logfile.read_text()


def test_more_than_one_worker_needs_a_broker():
    result = subprocess.run(
        [twistd_path(), "-n", "bridge", "--app", "workers_app:bridge"]
        + ["--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        env=apps_environ(),
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "twistd bridge: error: --workers 2 needs a shared broker: add --broker "
        "redis://host:port/db (the workers share Igor clients, sessions, "
        "processes and the bgpy state through it; see docs/scaling.rst)\n"
    )
    assert result.stdout == ""


@pytest.fixture
def refusal(monkeypatch):
    """
    C{refusal(args)}: the line L{Options} (what C{twistd bridge ARGS} calls)
    refuses C{args} with, in this process: the same line a real twistd
    prints alone on stderr before exiting 1 (as
    L{test_more_than_one_worker_needs_a_broker} sees).
    """
    monkeypatch.syspath_prepend(APPS)
    saved = sys.modules.get("workers_app")

    def refuse(args):
        sys.modules.pop("workers_app", None)  # (the options configure its Bridge)
        with pytest.raises(SystemExit) as raised:
            Options().parseOptions(list(args))
        return raised.value.code

    yield refuse
    sys.modules.pop("workers_app", None)
    if saved is not None:
        sys.modules["workers_app"] = saved


def test_a_wrong_number_of_workers_is_one_line(refusal):
    assert refusal(["--app", "workers_app:bridge", "--workers", "0"]) == (
        "twistd bridge: error: workers must be at least 1"
    )


def test_reload_runs_one_server(refusal):
    args = ["--app", "workers_app:bridge", "--reload", "--port", "0"]
    args += ["--workers", "2", "--broker", "redis://127.0.0.1:1/0"]
    assert refusal(args) == (
        "twistd bridge: error: --workers 2: --reload runs one server; "
        "leave out --workers (or --reload)"
    )


def test_bridge_workers_2_shares_a_unix_socket_and_dies_with_a_killed_supervisor(
    broker, tmp_path
):
    """
    C{Bridge(workers=2)} in the app is the same setting as C{--workers 2}:
    two workers, sharing the UNIX socket; killing the supervisor kills them.
    """
    path = str(tmp_path / "bridge.sock")
    server = BridgeProcess(
        ["--app", "workers_app:two", "--port", f"unix:{path}", "--broker", broker],
        env=apps_environ(),
        closed=("igor", "bgpy"),
    ).start()
    try:
        pids = wait_for(lambda: len(workers_of(server)) == 2 and workers_of(server), 15)
        seen = seen_pids(server, pids, ask=lambda: unix_call(path, "pid"))
        assert seen == set(pids)
        assert server.output.count(f"http listening on {path}") == 2
        os.kill(server.process.pid, signal.SIGKILL)
        wait_for(
            lambda: not any(process_alive(p) for p in pids),
            15,
            what="the workers to die",
        )
    finally:
        server.stop()


def test_workers_1_is_the_single_process_of_today():
    with BridgeProcess(
        ["--app", "workers_app:bridge", "--workers", "1"],
        env=apps_environ(),
        closed=("igor", "bgpy"),
    ) as server:
        assert call(server, "pid") == server.process.pid
        assert children(server.process.pid) == []
        health = requests.get(server.url("/health"), timeout=5).json()
        assert "worker" not in health


def test_daemon_mode_the_pidfile_is_the_supervisors(broker, tmp_path):
    pidfile, logfile = tmp_path / "bridge.pid", tmp_path / "bridge.log"
    result = subprocess.run(
        [twistd_path(), "--pidfile", str(pidfile), "--logfile", str(logfile)]
        + ["bridge", "--app", "workers_app:bridge", "--port", "0"]
        + ["--workers", "2", "--broker", broker],
        capture_output=True,
        text=True,
        env=apps_environ(),
        cwd=str(tmp_path),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10))
    try:
        log = wait_for(
            lambda: (t := logfile.read_text()).count("http listening on") == 2 and t,
            20,
            what="both workers listening, in the supervisor's log",
        )
        address = re.search(r"http listening on (\S+)", log).group(1)
        pids = wait_for(lambda: len(children(pid)) == 2 and children(pid), 10)
        server = BridgeProcess()
        server.addresses["http"] = address
        assert seen_pids(server, pids) == set(pids)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not process_alive(pid), 20, what="the supervisor to exit")
        wait_for(lambda: not pidfile.exists(), 5, what="the pidfile removed")
        assert not any(process_alive(p) for p in pids)
        log = logfile.read_text()
        assert log.count("shutdown complete") == 2  # each worker drained
        assert "workers: every worker exited" in log
        # The supervisor's own lines (a worker's are prefixed "worker N: ").
        own = [line for line in log.splitlines() if "] worker " not in line]
        assert not [line for line in own if "Traceback" in line], log
    finally:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


# the supervisor on a clock: replacing workers, backing off, stopping -------


class FakeProcess:
    def __init__(self, proto, pid):
        self.proto, self.pid, self.signals = proto, pid, []
        proto.transport = self
        proto.makeConnection(self)

    def signalProcess(self, signum):
        self.signals.append(signum)

    def end(self, code):
        from twisted.internet.error import ProcessTerminated
        from twisted.python.failure import Failure

        self.proto.processEnded(Failure(ProcessTerminated(exitCode=code)))


class WorkerReactor:
    """A clock whose spawnProcess records the workers instead of starting them."""

    def __init__(self):
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.spawned = []
        self.running = True

    def __getattr__(self, name):
        return getattr(self.clock, name)

    def callWhenRunning(self, f, *a):
        pass

    def callFromThread(self, f, *a):
        f(*a)

    def stop(self):
        self.running = False

    def spawnProcess(self, proto, executable, args, env, childFDs):
        process = FakeProcess(proto, 1000 + len(self.spawned))
        self.spawned.append((process, args, env, childFDs))
        return process


def supervisor(reactor, n=2):
    from twistbridge.config import Settings
    from twistbridge.workers import WorkersService

    settings = Settings(
        port="none",
        igor_port="none",
        bgpy_port="none",
        workers=n,
        broker="redis://127.0.0.1:1/0",
        shutdown_timeout=3,
    )
    argv = ["twistd", "-n", "bridge", "--workers", str(n), "--port", "5020"]
    return WorkersService(settings, argv, reactor=reactor, environ={})


def test_a_worker_that_dies_young_is_replaced_after_a_doubling_delay():
    from twisted.logger import capturedLogs

    reactor = WorkerReactor()
    service = supervisor(reactor)
    service.startService()
    assert [env["TWISTBRIDGE_WORKER"] for _, _, env, _ in reactor.spawned] == ["1", "2"]
    process, args, env, fds = reactor.spawned[0]
    assert env["LISTEN_FDS"] == "0" and fds == {0: 0, 1: 1, 2: 2}
    assert args[args.index("bridge") + 1 :] == [
        "--port",
        "none",
        "--igor-port",
        "none",
        "--bgpy-port",
        "none",
        "--metrics-port",
        "none",
    ]
    delays = []
    for _ in range(8):
        with capturedLogs() as events:
            reactor.spawned[-1 if delays else 0][0].end(3)
        (event,) = [e for e in events if "exited with status" in e["log_format"]]
        assert event["status"] == 3
        before = len(reactor.spawned)
        waited = 0.0
        while len(reactor.spawned) == before:
            reactor.advance(0.25)
            waited += 0.25
        delays.append(waited)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # One that ran long enough is replaced at once, and its delay starts over.
    reactor.advance(10)
    reactor.spawned[-1][0].end(0)
    reactor.advance(0)
    assert len(reactor.spawned) == 11
    assert [e["TWISTBRIDGE_WORKER"] for _, _, e, _ in reactor.spawned[2:]] == ["1"] * 9


def test_a_second_signal_is_passed_on_to_force_the_workers_exit():
    reactor = WorkerReactor()
    service = supervisor(reactor)
    service.startService()
    (one, *_), (two, *_) = reactor.spawned
    service._on_signal(signal.SIGTERM)
    assert reactor.running is False  # twistd then stops the service:
    service.stopService()
    assert one.signals == two.signals == [signal.SIGTERM]
    service._on_signal(signal.SIGINT)
    assert one.signals == two.signals == [signal.SIGTERM, signal.SIGTERM]


def test_stopping_passes_sigterm_on_and_kills_past_the_bound():
    reactor = WorkerReactor()
    service = supervisor(reactor)
    service.startService()
    (one, *_), (two, *_) = reactor.spawned
    stopped = service.stopService()
    assert one.signals == two.signals == [signal.SIGTERM]
    one.end(0)
    assert not stopped.called
    reactor.advance(3 + 5)
    assert two.signals == [signal.SIGTERM, signal.SIGKILL]
    two.end(-9)
    assert stopped.called
    reactor.advance(60)
    assert len(reactor.spawned) == 2  # none replaced while stopping


ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.mark.skipif(
    ACTIVATE is None,
    reason="systemd-socket-activate is not installed (make test installs it)",
)
def test_the_workers_share_the_sockets_systemd_passed(broker, tmp_path):
    port = free_port()
    env = apps_environ()
    command = [ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=http"]
    for name in ("PYTHONPATH", "PATH", "HOME"):
        if name in env:
            command += ["-E", f"{name}={env[name]}"]
    command += [twistd_path(), "-n", "--pidfile", "", "bridge"]
    command += [
        "--app",
        "workers_app:bridge",
        "--port",
        "systemd:domain=INET:name=http",
    ]
    command += ["--workers", "2", "--broker", broker]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        server = BridgeProcess()
        server.addresses["http"] = f"127.0.0.1:{port}"

        def first_answer():  # the first connection starts twistd
            try:
                return call(server, "pid", timeout=30)
            except requests.ConnectionError as e:
                if "Connection refused" in str(e):
                    return None
                raise

        wait_for(first_answer, 15, what="the activated bridge to answer")
        pids = wait_for(
            lambda: len(children(process.pid)) == 2 and children(process.pid), 15
        )
        assert seen_pids(server, pids) == set(pids)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        output = process.stdout.read().decode()
        assert output.count(f"http listening on 127.0.0.1:{port}") == 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def accepted_by(pid, port):
    """The established connections to C{port} held by process C{pid}."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "01" and int(parts[1].split(":")[1], 16) == port:
                inodes.add(parts[9])
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def _announces(listener):
    return [m["data"] for m in listener.of("relay", "announce")]


def test_igor_broadcasts_and_the_bgpy_state_are_shared_by_both_workers(broker):
    server = BridgeProcess(
        ["--app", "broker_bgpy_app:bridge", "--workers", "2", "--broker", broker],
        env=apps_environ(),
    ).start()
    listeners = []
    connections = []
    try:
        pids = wait_for(lambda: len(workers_of(server)) == 2 and workers_of(server), 15)

        # An Igor broadcast reaches the clients of both workers, once.
        url = server.url("/ws", scheme="ws")
        by_pid = {}

        def one_on_each():
            listener = _broker.Listener(url)
            listeners.append(listener)
            by_pid.setdefault(listener.call("whoami", stream="w")[0]["pid"], listener)
            return set(by_pid) == set(pids)

        wait_for(one_on_each, 30, interval=0, what="a client on each worker")
        # The relay process runs on one worker: its ticks name it.
        holder = wait_for(
            lambda: [m["data"]["pid"] for m in by_pid[pids[0]].of("relay", "tick")][
                -1:
            ],
            15,
            what="a tick",
        )[0]
        assert holder in pids
        assert by_pid[holder].call("announce", "one", stream="a1") == ["sent"]
        assert by_pid[holder].call("announce", "two", stream="a2") == ["sent"]
        for listener in by_pid.values():
            wait_for(
                lambda x=listener: len(_announces(x)) >= 2, 10, what="the announces"
            )
        for listener in by_pid.values():  # a duplicate would be in by now
            listener.call("whoami", stream="w2")
        for listener in by_pid.values():
            assert _announces(listener) == ["one", "two"]

        # bgpy clients on both workers share one state.
        port = server.port("bgpy")
        # One worker holds the bgpy lease (its /health says so) before any EXEC.
        wait_for(
            lambda: (
                requests.get(server.url("/health"), timeout=5).json()["broker"]["bgpy"]
                == {"up": True, "holder": True}
            ),
            20,
            interval=0,
            what="a worker to hold the bgpy lease",
        )

        def one_bgpy_on_each():
            connections.append(_Lines(port))
            return all(accepted_by(pid, port) for pid in pids)

        wait_for(
            one_bgpy_on_each, 30, interval=0, what="a bgpy connection on each worker"
        )
        for lines in connections:
            lines.send("EXEC", command="increase", value_change=10)
            assert lines.read() == {
                "type": "OK",
                "args": {"message": "Received 'EXEC'"},
            }
        for lines in connections:
            lines.send("EXEC", command="get", await_response=True)
            assert lines.read()["type"] == "OK"
            state = lines.read()["args"]
        # One state: every connection's EXECs counted in it, on either worker.
        n = len(connections)
        assert state == {"request_count": 2 * n, "value": 1000 + 10 * n}
    finally:
        for listener in listeners:
            listener.close()
        for lines in connections:
            lines.close()
        assert server.stop() == 0


class _Lines:
    """A JSON-lines bgpy connection."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")

    def send(self, kind, **args):
        self.sock.sendall(json.dumps({"type": kind, "args": args}).encode() + b"\n")

    def read(self):
        line = self.file.readline()
        assert line, "connection closed"
        return json.loads(line)

    def close(self):
        self.sock.close()
