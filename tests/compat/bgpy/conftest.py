"""
Fixtures of the compatibility tests for bgpy.

bgpy's own tests (test_cli.py, test_client_server.py, test_file_init.py)
start background servers at import time and leave them to stop on EXIT;
any that is still running when the session ends is stopped here (only the
children of this process running our bgpy server).

Those servers bind bgpy's default port plus one to three, at import, and
every pytest-xdist worker imports every test file: each worker but the
first has bgpy's default port moved by ten times its number (set here,
before the test files import it), so that their servers do not meet.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from twistbridge.bgpy.core import environment

from ...conftest import environ_with

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
environment.PORT = 54321 + 10 * int(_WORKER[2:] or 0)

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
if APPS not in sys.path:
    sys.path.insert(0, APPS)


def _our_servers():
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                ppid = f.read().rpartition(")")[2].split()[1]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == me and b"twistbridge.bgpy" in command and b"server" in command:
            yield int(pid)


def pytest_sessionfinish(session, exitstatus):
    for pid in _our_servers():
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


@pytest.fixture(scope="session")
def apps_env():
    """An environment for a server: finds apps/, no BGPY_TOKEN unless given."""

    def make(**extra):
        return environ_with(APPS, drop=["BGPY_TOKEN"], **extra)

    return make


@pytest.fixture
def run_cli():
    """Run `python -m twistbridge.bgpy ARGS` to completion."""

    def run(*args, env=None, timeout=30):
        return subprocess.run(
            [sys.executable, "-m", "twistbridge.bgpy", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    return run


class Server:
    """`python -m twistbridge.bgpy server 127.0.0.1 PORT ARGS` in a subprocess."""

    def __init__(self, port, args, env, cwd):
        self.port = port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twistbridge.bgpy",
                "server",
                "127.0.0.1",
                str(port),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("bgpy server not listening") from None
                time.sleep(0.05)  # sleep-ok: polling for the listener, bounded

    def wait(self, timeout=20):
        return self.process.wait(timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stderr.close()


def _servers(apps_env, folder):
    """The factory of L{bgpy_server}, stopping what it started when closed."""
    from twistbridge.testing import free_port

    started = []

    def start(*args, token=None, path=None, **env):
        extra = dict(env)
        if token is not None:
            extra["BGPY_TOKEN"] = token
        environ = apps_env(**extra)
        if path:
            environ["PYTHONPATH"] = os.pathsep.join([str(path), environ["PYTHONPATH"]])
        server = Server(free_port(), args, environ, str(path or folder))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def bgpy_server(apps_env, tmp_path):
    """bgpy_server(*args, token=None, path=None, **env) -> a started Server."""
    yield from _servers(apps_env, tmp_path)


@pytest.fixture(scope="module")
def module_bgpy_server(apps_env, tmp_path_factory):
    """L{bgpy_server} for the tests of one module: only for tests that leave
    the server's state as they found it."""
    yield from _servers(apps_env, tmp_path_factory.mktemp("bgpy-server"))
