"""
systemd: sd_notify (READY=1 after the ports accept, STOPPING=1, watchdog
pings) and socket activation with the real `systemd-socket-activate`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading

import pytest
import requests

from twistbridge import _systemd
from twistbridge.testing import BridgeProcess, free_port, twistd_path, wait_for

APP = ["--app", "production_app:bridge"]


@pytest.fixture
def notify_socket(tmp_path):
    """A Unix datagram socket; its path goes in NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    yield path, sock
    sock.close()


def receive(sock) -> dict:
    """One notification, as a dict of its KEY=VALUE lines."""
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def accepts(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=2).close()
    return True


# unit ---------------------------------------------------------------------


def test_notify_address_forms():
    assert _systemd.notify_address({}) is None
    assert _systemd.notify_address({"NOTIFY_SOCKET": ""}) is None
    assert _systemd.notify_address({"NOTIFY_SOCKET": "relative"}) is None
    assert _systemd.notify_address({"NOTIFY_SOCKET": "/run/x"}) == "/run/x"
    assert _systemd.notify_address({"NOTIFY_SOCKET": "@abstract"}) == "\0abstract"


def test_notify_without_systemd_does_nothing():
    assert _systemd.notify("READY=1", {}) is False


def test_notify_to_a_missing_socket_is_logged_not_raised(tmp_path):
    assert (
        _systemd.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "none")}) is False
    )


def test_notify_abstract_namespace_socket():
    name = f"twistbridge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert _systemd.notify("STATUS=hi", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(100) == b"STATUS=hi"
    finally:
        sock.close()


def test_watchdog_interval():
    assert _systemd.watchdog_interval({}) is None
    assert _systemd.watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert _systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert _systemd.watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert _systemd.watchdog_interval(mine) == 1.0
    other = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert _systemd.watchdog_interval(other) is None


# real processes -------------------------------------------------------------


def test_ready_after_ports_accept_then_stopping(notify_socket, apps_env):
    path, sock = notify_socket
    env = dict(apps_env, NOTIFY_SOCKET=path)
    server = BridgeProcess(APP, env=env)
    # Start without waiting for the log lines: READY=1 alone must be enough.
    server.start_timeout = 30
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    try:
        ready = receive(sock)
        assert ready["READY"] == "1"
        assert int(ready["MAINPID"]) == server.process.pid
        # By READY=1 every listener has logged its address and accepts.
        addresses = dict(server.addresses)
        assert set(addresses) == {"http", "igor", "bgpy"}
        assert all(accepts(a) for a in addresses.values())
        assert ready["STATUS"] == (
            f"serving http {addresses['http']}, igor {addresses['igor']}, "
            f"bgpy {addresses['bgpy']}"
        )
        thread.join(30)
        server.signal(signal.SIGTERM)
        assert receive(sock) == {"STOPPING": "1"}
        assert server.process.wait(15) == 0
    finally:
        server.stop()


def test_watchdog_pings(notify_socket, apps_env):
    path, sock = notify_socket
    env = dict(apps_env, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    with BridgeProcess(APP, env=env):
        assert receive(sock)["READY"] == "1"
        # Every 0.1 s (half of WATCHDOG_USEC): a few arrive within the timeout.
        assert [receive(sock) for _ in range(3)] == [{"WATCHDOG": "1"}] * 3


def test_no_notification_when_embedded(apps_env):
    """Without twistd (an adopting application), the service never notifies."""
    from twistbridge import Bridge

    service = Bridge(port="tcp:0:interface=127.0.0.1").service()
    assert service.owns_process is False


# socket activation -----------------------------------------------------------

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(
    ACTIVATE is None,
    reason="systemd-socket-activate is not installed (make test installs it)",
)


def first_get(url: str):
    """GET once the activator listens (refused until then): that starts twistd."""

    def attempt():
        try:
            return requests.get(url, timeout=30)
        except requests.ConnectionError as e:
            if "Connection refused" in str(e):
                return None
            raise

    return wait_for(attempt, 10, what=f"{url} to answer")


def activate(listen, fdnames, bridge_args, env, cwd):
    command = [ACTIVATE]
    for address in listen:
        command += ["-l", address]
    if fdnames:
        command.append("--fdname=" + ":".join(fdnames))
    # The activator passes on only the environment it is told to.
    for name in ("PYTHONPATH", "PATH", "HOME", "NOTIFY_SOCKET"):
        if name in env:
            command += ["-E", f"{name}={env[name]}"]
    command += [twistd_path(), "-n", "--pidfile", "", "bridge", *bridge_args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd
    )


@needs_activate
def test_socket_activation_by_index(tmp_path, apps_env):
    port = free_port()
    # systemd always names the sockets it passes (LISTEN_FDNAMES), and
    # Twisted insists on the names; the activator sets them with --fdname.
    process = activate(
        [f"127.0.0.1:{port}"],
        ["http"],
        [
            *APP,
            "--port",
            "systemd:domain=INET:index=0",
            "--igor-port",
            "none",
            "--bgpy-port",
            "none",
        ],
        apps_env,
        str(tmp_path),
    )
    try:
        # The socket listens before twistd runs: the first request starts it.
        response = first_get(f"http://127.0.0.1:{port}/health")
        assert response.status_code == 200
        assert response.json()["services"] == {
            "http": {"up": True, "address": f"127.0.0.1:{port}"}
        }
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        output = process.stdout.read().decode()
        assert f"http listening on 127.0.0.1:{port}" in output
        assert "shutdown complete" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


DEPLOYMENT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "docs",
    "deployment.rst",
)


@needs_activate
def test_socket_activation_as_the_page_shows(tmp_path, apps_env):
    """docs/deployment.rst's systemd-socket-activate command, on a free port."""
    with open(DEPLOYMENT, encoding="utf-8") as f:
        text = f.read().split("the environment with ``-E``:", 1)[1]
    block = text.split(".. code-block:: shell", 1)[1].split("\n\n")[1]
    command = " ".join(block.replace("\\\n", " ").split())
    assert command.startswith("systemd-socket-activate -l 127.0.0.1:5020 ")
    port = free_port()
    argv = shlex.split(command.replace("127.0.0.1:5020", f"127.0.0.1:{port}"))
    env = dict(apps_env)
    env["PATH"] = os.pathsep.join([os.path.dirname(twistd_path()), env.get("PATH", "")])
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(tmp_path),
    )
    try:
        response = first_get(f"http://127.0.0.1:{port}/health")
        assert response.status_code == 200
        assert response.json()["services"] == {
            "http": {"up": True, "address": f"127.0.0.1:{port}"}
        }
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert "shutdown complete" in process.stdout.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


CONTRIB = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contrib", "systemd"
)
SOCKET_UNITS = [
    "twistbridge.socket",
    "twistbridge-igor.socket",
    "twistbridge-bgpy.socket",
]


def unit_settings(name: str) -> dict:
    """KEY -> value of a unit file (continuation lines joined, comments dropped)."""
    with open(os.path.join(CONTRIB, name)) as f:
        text = f.read().replace("\\\n", " ")
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_shipped_units_name_every_socket():
    service = unit_settings("twistbridge.service")
    assert service["Type"] == "notify"
    assert service["DynamicUser"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    names = {unit: unit_settings(unit)["FileDescriptorName"] for unit in SOCKET_UNITS}
    assert names == {
        "twistbridge.socket": "http",
        "twistbridge-igor.socket": "igor",
        "twistbridge-bgpy.socket": "bgpy",
    }
    assert all(
        unit_settings(u)["Service"] == "twistbridge.service" for u in SOCKET_UNITS
    )
    assert service["Requires"].split() == SOCKET_UNITS
    argv = shlex.split(service["ExecStart"])
    for option, name in (
        ("--port", "http"),
        ("--igor-port", "igor"),
        ("--bgpy-port", "bgpy"),
    ):
        assert argv[argv.index(option) + 1] == f"systemd:domain=INET:name={name}"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_shipped_units_verify(tmp_path):
    for name in ["twistbridge.service", *SOCKET_UNITS]:
        with open(os.path.join(CONTRIB, name)) as f:
            text = f.read()
        text = text.replace("/opt/twistbridge/venv/bin/twistd", twistd_path())
        text = text.replace("/opt/twistbridge/app", str(tmp_path))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            *(str(tmp_path / n) for n in ["twistbridge.service", *SOCKET_UNITS]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")


@needs_activate
def test_shipped_units_run_under_socket_activation(tmp_path, apps_env, notify_socket):
    """The service's own ExecStart, given the three sockets its units declare."""
    path, sock = notify_socket
    argv = shlex.split(unit_settings("twistbridge.service")["ExecStart"])
    bridge_args = argv[argv.index("bridge") + 1 :]
    bridge_args[bridge_args.index("--app") + 1] = "production_app:bridge"
    ports = {unit_settings(u)["FileDescriptorName"]: free_port() for u in SOCKET_UNITS}
    process = activate(
        [f"127.0.0.1:{p}" for p in ports.values()],
        list(ports),
        bridge_args,
        dict(apps_env, NOTIFY_SOCKET=path),
        str(tmp_path),
    )
    try:
        response = first_get(f"http://127.0.0.1:{ports['http']}/health")
        assert response.status_code == 200
        assert response.json()["services"] == {
            name: {"up": True, "address": f"127.0.0.1:{port}"}
            for name, port in ports.items()
        }
        assert receive(sock)["READY"] == "1"
        process.send_signal(signal.SIGTERM)
        # Next comes STOPPING=1 (no WATCHDOG_USEC here: no pings between).
        assert receive(sock) == {"STOPPING": "1"}
        assert process.wait(15) == 0
        output = process.stdout.read().decode()
        events = [
            json.loads(line) for line in output.splitlines() if line.startswith("{")
        ]
        assert "shutdown complete" in [e["log_text"] for e in events]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_systemd_endpoint_without_sockets_is_a_one_line_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    result = subprocess.run(
        [twistd_path(), "-n", "bridge", "--port", "systemd:domain=INET:name=http"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "twistd bridge: error: --port systemd:domain=INET:name=http: systemd passed no "
        "such socket (KeyError: 'http'); start the service through its .socket unit "
        "(LISTEN_FDS and LISTEN_FDNAMES must name the sockets)"
    )
