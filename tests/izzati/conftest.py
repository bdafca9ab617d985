"""What the izzati tests share: the test app under `twistd bridge`."""

import pytest

from twistbridge.testing import BridgeProcess

from ..conftest import apps_environ


@pytest.fixture(scope="session")
def izzati_app():
    """
    C{izzati_app(tmpdir)}: tests/apps/izzati_test_app.py under `twistd
    bridge` (HTTP only), its uploads' temporary files in C{tmpdir}; a
    L{BridgeProcess} to start.
    """

    def make(tmpdir):
        env = apps_environ(TMPDIR=str(tmpdir))
        args = ["--app", "izzati_test_app:bridge", "--igor-port", "none"]
        return BridgeProcess([*args, "--bgpy-port", "none"], env=env)

    return make
