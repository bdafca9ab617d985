"""The test app (tests/apps/testkit_app.py), importable by name so that its
process handlers pickle."""

import os
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
