"""The test app (tests/apps/testkit_app.py), importable by name so that its
process handlers pickle; and pytest run as a user runs it, in a process of
its own."""

import os
import subprocess
import sys

import pytest

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")
if APPS not in sys.path:
    sys.path.insert(0, APPS)


@pytest.fixture
def bridge():
    """The app the `bridge_client` fixture (twistbridge's pytest plugin) serves."""
    import testkit_app

    return testkit_app.bridge


@pytest.fixture
def run_pytest():
    """
    Run C{python -m pytest -q} on C{target} (a file or folder) in a process of
    its own, in C{cwd}, with C{pythonpath} as its C{PYTHONPATH}; extra
    arguments go before the target.  Returns the completed process (text).
    """

    def run(target, cwd, pythonpath, *args):
        env = dict(os.environ, PYTHONPATH=str(pythonpath))
        # Not one of this run's xdist workers: the child is a run of its own.
        for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
            env.pop(name, None)
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                *args,
                str(target),
            ],
            capture_output=True,
            text=True,
            cwd=str(cwd),
            env=env,
            timeout=120,
        )

    return run
