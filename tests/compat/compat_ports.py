"""Which compatibility test files bind fixed ports, and how to isolate them."""

import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))

#: Test files, relative to this folder, that bind fixed ports.
FIXED_PORT_FILES = (
    "igor/test_integration.py",
    "izzati/test_izzati.py",
    "izzati/test_readme.py",
    "jsonrpc/test_examples.py",
)

#: Set inside the namespace: run those files here.
INSIDE = "TWISTBRIDGE_OWN_NETWORK"

_usable = None


def own_network_usable():
    """Whether ``unshare -rn`` and ``ip`` can give a test a private loopback."""
    global _usable
    if _usable is None:
        _usable = bool(shutil.which("unshare") and shutil.which("ip")) and (
            subprocess.run(
                ["unshare", "-rn", "ip", "link", "set", "lo", "up"],
                capture_output=True,
            ).returncode
            == 0
        )
    return _usable
