"""
twistd daemon mode and graceful shutdown, with real processes.

- `twistd --pidfile F --logfile L bridge` forks, writes the pidfile, serves,
  honours --umask, and on SIGTERM stops and removes the pidfile;
- -u/-g drop privileges after binding (when the tests run as root);
- SIGTERM drains: a request in flight completes, new connections are refused,
  the process exits 0 within the bound; idle keep-alive connections do not
  hold the shutdown; the bound and a second SIGTERM force the exit.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
import websocket

from twistbridge.testing import BridgeProcess, JsonLinesClient, twistd_path, wait_for

APP = ["--app", "production_app:bridge"]


def process_gone(pid: int) -> bool:
    """The process has exited (or is a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def proc_status(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(field)


def refused(host: str, port: int) -> bool:
    """
    A new TCP connection to host:port is refused (or reset: it reached the
    kernel's backlog just as the listening socket closed).
    """
    try:
        socket.create_connection((host, port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


class Call(threading.Thread):
    """Run a blocking HTTP call in a thread; keep its response or error."""

    def __init__(self, func, *args, **kwargs):
        super().__init__(daemon=True)
        self.func, self.args, self.kwargs = func, args, kwargs
        self.response = None
        self.error = None
        self.finished_at = None

    def run(self):
        try:
            self.response = self.func(*self.args, **self.kwargs)
        except Exception as e:  # kept for the assertion
            self.error = e
        self.finished_at = time.monotonic()


# daemon mode -------------------------------------------------------------


def test_daemon_mode_pidfile_umask_serve_sigterm(tmp_path, apps_env):
    pidfile = tmp_path / "bridge.pid"
    logfile = tmp_path / "bridge.log"
    result = subprocess.run(
        [
            twistd_path(),
            "--pidfile",
            str(pidfile),
            "--logfile",
            str(logfile),
            "--umask",
            "027",
            "bridge",
            *APP,
            "--port",
            "0",
            "--igor-port",
            "0",
            "--bgpy-port",
            "0",
        ],
        capture_output=True,
        text=True,
        env=apps_env,
        cwd=str(tmp_path),
        timeout=30,
    )
    # The parent returns once the daemon has started.
    assert result.returncode == 0, result.stderr
    pid = int(
        wait_for(
            lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="pidfile"
        )
    )
    try:
        assert pid != os.getpid()
        log = wait_for(
            lambda: (t := logfile.read_text()) and "bgpy listening on" in t and t,
            15,
            what="listeners in the log file",
        )
        http_address = re.search(r"http listening on (\S+)", log).group(1)
        response = requests.get(f"http://{http_address}/health", timeout=5)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        # Daemonized: its own session, not our child, umask applied.
        assert os.getsid(pid) != os.getsid(0)
        assert int(proc_status(pid, "PPid")) != os.getpid()
        assert proc_status(pid, "Umask") == "0027"
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: process_gone(pid), 15, what="the daemon to exit")
        wait_for(lambda: not pidfile.exists(), 5, what="the pidfile to be removed")
        log = logfile.read_text()
        assert "Server Shut Down." in log
        assert "shutdown complete" in log
        assert "Traceback" not in log
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def free_privileged_port() -> int:
    for port in range(980, 1000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    pytest.skip("no free port below 1024 on 127.0.0.1")


@pytest.mark.skipif(
    os.geteuid() != 0, reason="-u/-g only apply when twistd starts as root"
)
def test_drops_privileges_after_binding(tmp_path, apps_env):
    port = free_privileged_port()
    tmp_path.chmod(0o777)
    server = BridgeProcess(
        [*APP, "--port", f"tcp:{port}:interface=127.0.0.1"],
        env=apps_env,
        cwd=str(tmp_path),
        twistd_args=["-n", "-u", "nobody", "-g", "nogroup"],
    )
    with server:
        pid = server.process.pid
        # Bound as root (a privileged port), then running as nobody/nogroup.
        # The "listening" line comes from the bind, before twistd drops
        # privileges; /health answers once the service runs, after it.
        assert server.port("http") == port
        response = requests.get(server.url("/health"), timeout=5)
        assert response.status_code == 200
        assert proc_status(pid, "Uid").split() == ["65534"] * 4
        assert proc_status(pid, "Gid").split() == ["65534"] * 4
        assert server.stop() == 0


# graceful shutdown -------------------------------------------------------


def slow_request_in_flight(server, seconds):
    """GET /slow?seconds=N in a thread; return once the server is handling it."""
    call = Call(requests.get, server.url(f"/slow?seconds={seconds}"), timeout=30)
    call.start()
    wait_for(
        lambda: "slow request started" in server.output,
        10,
        what="the request in flight",
    )
    return call


def test_sigterm_drains_a_request_an_upload_an_igor_stream_and_a_bgpy_task(
    apps_env, tmp_path
):
    """
    One SIGTERM while a slow request, an izzati upload, an Igor stream and a
    bgpy task are in flight and a keep-alive connection is idle: new
    connections are refused, the idle connection is closed at once, the rest
    finish, and the process exits 0 within the bound.
    """
    marker = tmp_path / "exit"
    env = dict(apps_env, TWISTBRIDGE_TEST_EXIT_MARKER=str(marker))
    server = BridgeProcess(APP, env=env).start()
    try:
        host, port = server.addresses["http"].rsplit(":", 1)
        idle = http.client.HTTPConnection(host, int(port), timeout=10)
        idle.request("GET", "/health")
        response = idle.getresponse()
        assert response.status == 200
        response.read()
        probe = requests.post(server.url("/"), data={"seconds": "0"}, timeout=10)
        assert probe.status_code == 200
        ws = websocket.create_connection(
            f"ws://{server.addresses['igor']}/", timeout=10
        )
        bgpy = JsonLinesClient(server.addresses["bgpy"])
        bgpy.send("AUTH", token="production-secret-token-value")
        assert [bgpy.line()["type"], bgpy.line()["type"]] == ["OK", "OK"]

        ws.send(json.dumps({"streamId": "s", "action": "wait", "data": 1.5}))
        bgpy.send("EXEC", sleep=1.5)
        assert bgpy.line() == {"type": "OK", "args": {"message": "Received 'EXEC'"}}
        upload = Call(
            requests.post,
            server.url("/"),
            data={"seconds": "2"},
            files={"file": ("a.txt", b"hello")},
            timeout=30,
        )
        upload.start()
        call = Call(requests.get, server.url("/slow?seconds=2"), timeout=30)
        call.start()
        wait_for(
            lambda: (
                "igor stream started" in server.output
                and "bgpy task started" in server.output
                and server.output.count("slow upload started") == 2
                and "slow request started" in server.output
            ),
            10,
            what="the stream, the task, the upload and the request to run",
        )
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        wait_for(
            lambda: refused(host, int(port)), 5, what="new connections to be refused"
        )
        assert call.finished_at is None  # still in flight when refusing began
        # The idle connection is closed at once, not after the 60 s idle
        # timeout nor the 10 s bound.
        assert idle.sock.recv(1) == b""
        assert time.monotonic() - signalled < 5
        # The stream finishes, then the server says it goes away (1001).
        assert json.loads(ws.recv()) == {"streamId": "s", "data": "done"}
        assert json.loads(ws.recv()) == {"streamId": "s", "close": True}
        frame = ws.recv_data_frame(control_frame=True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1001
        assert server.process.wait(15) == 0
        exited = time.monotonic()
        call.join(5)
        upload.join(5)
        bgpy.close()
        idle.close()
    finally:
        server.stop()
    assert call.error is None
    assert call.response.status_code == 200
    assert call.response.json() == {"slept": 2.0}
    assert call.response.headers["Connection"] == "close"
    assert upload.error is None
    assert upload.response.status_code == 200
    assert upload.response.json() == {"status": "slept", "files": ["a.txt"]}
    assert exited - signalled < 10  # shutdown_timeout
    assert "stopped accepting: draining for up to 10.0s" in server.output
    assert "shutdown complete" in server.output
    # exit_task ran once the running task was done.
    assert marker.read_text() == "exit_task ran after 1 task(s)\n"


def test_shutdown_timeout_bounds_the_drain(apps_env):
    server = BridgeProcess([*APP, "--shutdown-timeout", "1"], env=apps_env).start()
    try:
        call = slow_request_in_flight(server, 30)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        elapsed = time.monotonic() - signalled
        call.join(5)
    finally:
        server.stop()
    assert 1 <= elapsed < 5
    assert isinstance(call.error, requests.ConnectionError)
    assert "still busy after 1.0s" in server.output


def test_second_sigterm_forces_the_exit(apps_env):
    server = BridgeProcess([*APP, "--shutdown-timeout", "60"], env=apps_env).start()
    try:
        call = slow_request_in_flight(server, 30)
        server.signal(signal.SIGTERM)
        wait_for(
            lambda: "stopped accepting" in server.output, 10, what="the drain to begin"
        )
        forced = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        elapsed = time.monotonic() - forced
        call.join(5)
    finally:
        server.stop()
    assert elapsed < 5
    assert isinstance(call.error, requests.ConnectionError)
    assert "Received SIGTERM again: forcing the exit" in server.output


def test_blocked_handler_thread_does_not_keep_the_process_alive(apps_env):
    server = BridgeProcess([*APP, "--shutdown-timeout", "1"], env=apps_env).start()
    try:
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "sleep", "params": [0]}
        probe = requests.post(server.url("/rpc"), json=rpc, timeout=10)
        assert probe.json() == {"jsonrpc": "2.0", "result": 0, "id": 1}
        rpc["params"] = [60]
        call = Call(requests.post, server.url("/rpc"), json=rpc, timeout=30)
        call.start()
        wait_for(
            lambda: (
                json.loads(requests.get(server.url("/health"), timeout=5).text)[
                    "pools"
                ]["threads"]["busy"]
                == 1
            ),
            10,
            what="the handler thread to be busy",
        )
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
        # The bound, the pools' grace, the exit grace, and some slack.
        assert time.monotonic() - signalled < 1 + 1 + 2 + 2
        call.join(5)
    finally:
        server.stop()
