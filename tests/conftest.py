"""Fixtures shared by every test module."""

import os
import sys

import pytest

from twistbridge.testing import BridgeProcess

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")


@pytest.fixture
def apps_env():
    """An environment whose PYTHONPATH finds the test apps in tests/apps."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [APPS, env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def demo_server():
    """The demo app in a real `twistd -n bridge` on ephemeral ports."""
    with BridgeProcess() as server:
        yield server


def pytest_report_header(config):
    return f"python: {sys.executable}"
