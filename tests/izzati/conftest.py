"""What the izzati tests share: the test app under `twistd bridge`."""

import os

import pytest

from twistbridge.testing import BridgeProcess

APPS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "apps")


@pytest.fixture(scope="session")
def izzati_app():
    """
    C{izzati_app(tmpdir)}: tests/apps/izzati_test_app.py under `twistd
    bridge` (HTTP only), its uploads' temporary files in C{tmpdir}; a
    L{BridgeProcess} to start.
    """

    def make(tmpdir):
        env = dict(os.environ, TMPDIR=str(tmpdir))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [APPS, env.get("PYTHONPATH")]))
        args = ["--app", "izzati_test_app:bridge", "--igor-port", "none"]
        return BridgeProcess([*args, "--bgpy-port", "none"], env=env)

    return make
