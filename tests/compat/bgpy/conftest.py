"""
Fixtures of the compatibility tests for bgpy.

bgpy's own tests (test_cli.py, test_client_server.py, test_file_init.py)
start background servers at import time and leave them to stop on EXIT;
any that is still running when the session ends is stopped here (only the
children of this process running our bgpy server).
"""

import os
import signal
import subprocess
import sys

import pytest

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


@pytest.fixture
def apps_env():
    """An environment for a server: finds apps/, no BGPY_TOKEN unless given."""

    def make(**extra):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [APPS, env.get("PYTHONPATH")])
        )
        env.pop("BGPY_TOKEN", None)
        env.update(extra)
        return env

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
