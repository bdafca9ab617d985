"""`twistd -n bridge --reload`: edit a handler, see it served on the same port."""

import os
import socket
import subprocess
import threading

import pytest
import requests

from twistbridge.reload import (
    ReloadError,
    child_arguments,
    parse_tcp,
    refuse_reason,
    watched_files,
)
from twistbridge.testing import BridgeProcess, twistd_path, wait_for

APP = """\
from twistbridge import Bridge

bridge = Bridge()


@bridge.rpc_function(run_in="reactor")
def version():
    return {version!r}
"""


def write_app(folder, version, text=None):
    path = folder / "devapp.py"
    path.write_text(text if text is not None else APP.format(version=version))
    return path


def call_version(server, timeout=10):
    body = {"jsonrpc": "2.0", "method": "version", "id": 1}
    response = requests.post(server.url("/rpc"), json=body, timeout=timeout)
    return response.json()["result"]


@pytest.fixture
def dev_server(tmp_path):
    write_app(tmp_path, "one")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    server = BridgeProcess(
        ["--app", "devapp:bridge", "--reload"],
        env=env,
        cwd=str(tmp_path),
        closed=("igor", "bgpy"),
    )
    with server:
        yield server


def served_version_becomes(server, expected, bound=15.0):
    # (A restart imports the app anew: seconds on a loaded machine.  How fast
    # is for a benchmark; this checks that the edit is served.)
    seen = []

    def check():
        try:
            seen.append(call_version(server, timeout=bound))
        except requests.RequestException as e:
            seen.append(repr(e))
        return seen[-1] == expected

    wait_for(check, bound, what=f"version {expected!r} (saw {seen[-3:]})")


def test_an_edit_is_served_on_the_same_port(dev_server, tmp_path):
    port = dev_server.port()
    assert call_version(dev_server) == "one"
    write_app(tmp_path, "two, edited")
    served_version_becomes(dev_server, "two, edited")
    assert dev_server.port() == port
    assert "reload: devapp.py changed; restarting" in dev_server.output


def test_a_syntax_error_is_shown_and_the_next_save_is_served(dev_server, tmp_path):
    assert call_version(dev_server) == "one"
    write_app(tmp_path, None, text="def broken(:\n")
    wait_for(lambda: "SyntaxError" in dev_server.output, 10, what="the SyntaxError")
    wait_for(
        lambda: (
            "reload: the server exited with status 1; waiting for a change"
            in dev_server.output
        ),
        10,
        what="the supervisor waiting",
    )
    # A client that connects now waits in the listening socket's backlog and
    # is answered once the fixed app is up: the port never closed.
    answers = []
    early = threading.Thread(
        target=lambda: answers.append(call_version(dev_server, 20))
    )
    early.start()
    write_app(tmp_path, "three, fixed")
    early.join(25)
    assert answers == ["three, fixed"]
    assert call_version(dev_server) == "three, fixed"


def test_stopping_the_supervisor_stops_the_server(tmp_path):
    write_app(tmp_path, "one")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    server = BridgeProcess(
        ["--app", "devapp:bridge", "--reload"],
        env=env,
        cwd=str(tmp_path),
        closed=("igor", "bgpy"),
    )
    with server:
        children = subprocess.run(
            ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 1
    # twistd's clean stop on SIGTERM: 0, or the same SIGTERM re-raised.
    assert server.process.returncode in (0, -15)
    assert not os.path.exists(f"/proc/{children[0]}")


@pytest.mark.parametrize(
    "twistd_args, env, message",
    [
        (
            [],
            {},
            "--reload is for development: run it in the foreground "
            "(twistd -n bridge --reload ...)",
        ),
        (
            ["-n"],
            {"NOTIFY_SOCKET": "/run/systemd/notify"},
            "--reload is for development and is refused under systemd "
            "(NOTIFY_SOCKET is set): run the service without --reload",
        ),
    ],
)
def test_refused_outside_a_terminal(tmp_path, twistd_args, env, message):
    result = subprocess.run(
        [
            twistd_path(),
            *twistd_args,
            "--pidfile",
            str(tmp_path / "pid"),
            "bridge",
            "--reload",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert result.returncode != 0
    assert result.stderr.strip() == f"twistd bridge: error: {message}"


def test_refusal_rule():
    assert refuse_reason(True, {}) is None
    assert "INVOCATION_ID is set" in refuse_reason(True, {"INVOCATION_ID": "x"})


@pytest.mark.parametrize(
    "value, address",
    [
        ("5020", ("127.0.0.1", 5020)),
        ("tcp:5020", ("", 5020)),
        ("tcp:port=5021:interface=127.0.0.1", ("127.0.0.1", 5021)),
        ("tcp6:5022", ("::", 5022)),
        (r"tcp:5020:interface=\:\:1", ("::1", 5020)),
        (r"tcp6:0:interface=fe80\:\:1%lo", ("fe80::1%lo", 0)),
        ("none", None),
    ],
)
def test_listener_descriptions_are_read_as_twisted_reads_them(value, address):
    assert parse_tcp("--port", value) == address


@pytest.mark.parametrize(
    "value, message",
    [
        ("tcp:70000", "--port tcp:70000: a port number is 0-65535"),
        (
            "unix:/tmp/s",
            "--port unix:/tmp/s: --reload serves TCP listeners only "
            "(a port number or tcp:PORT:interface=ADDRESS)",
        ),
        (
            "tcp:abc",
            "--port tcp:abc: not a TCP listener description (invalid literal for "
            "int() with base 10: 'abc'); write tcp:PORT:interface=ADDRESS",
        ),
    ],
)
def test_listener_descriptions_refused_by_reload(value, message):
    with pytest.raises(ReloadError) as caught:
        parse_tcp("--port", value)
    assert str(caught.value) == message


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
def test_an_escaped_ipv6_interface_is_served(tmp_path):
    write_app(tmp_path, "on ::1")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    server = BridgeProcess(
        ["--app", "devapp:bridge", "--reload", "--port", r"tcp:0:interface=\:\:1"],
        env=env,
        cwd=str(tmp_path),
        closed=("igor", "bgpy"),
    )
    with server:
        assert server.addresses["http"] == f"[::1]:{server.port()}"
        assert call_version(server) == "on ::1"


def test_child_arguments_replace_listeners_and_drop_reload():
    argv = [
        "twistd",
        "-n",
        "bridge",
        "--app",
        "a:b",
        "--reload",
        "--port",
        "0",
        "--igor-port=5",
        "--threads",
        "3",
    ]
    domains = {"http": "INET", "igor": "INET6"}
    assert child_arguments(argv, domains, {"http", "igor", "bgpy"}) == [
        "--app",
        "a:b",
        "--threads",
        "3",
        "--port",
        "systemd:domain=INET:name=http",
        "--igor-port",
        "systemd:domain=INET6:name=igor",
        "--bgpy-port",
        "none",
    ]
    assert child_arguments(argv, domains, {"http"}) == [
        "--app",
        "a:b",
        "--threads",
        "3",
        "--port",
        "systemd:domain=INET:name=http",
    ]


def test_watched_files_of_a_package(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "app.py", "sub/__init__.py", "sub/helpers.py"):
        (package / name).write_text("")
    (package / "notes.txt").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert watched_files("pkg.app:bridge") == sorted(
        str(package / n)
        for n in ("__init__.py", "app.py", "sub/__init__.py", "sub/helpers.py")
    )


@pytest.mark.long
def test_reload_as_a_bridge_keyword(tmp_path):
    """Bridge(reload=True) starts the supervisor too (and the child serves)."""
    write_app(
        tmp_path,
        None,
        text=APP.replace("Bridge()", "Bridge(reload=True)").format(version="kw"),
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    with BridgeProcess(
        ["--app", "devapp:bridge"], env=env, cwd=str(tmp_path), closed=("igor", "bgpy")
    ) as server:
        assert call_version(server) == "kw"
        assert "reload: watching" in server.output
        write_app(
            tmp_path,
            None,
            text=APP.replace("Bridge()", "Bridge(reload=True)").format(version="kw2"),
        )
        served_version_becomes(server, "kw2")
