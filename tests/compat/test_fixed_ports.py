"""The fixed-port test files, each in a network namespace of its own (see conftest.py)."""

import os
import subprocess
import sys

import pytest
from compat_ports import FIXED_PORT_FILES, HERE, INSIDE, own_network_usable


@pytest.mark.parametrize("path", FIXED_PORT_FILES)
def test_in_own_network(path):
    if os.environ.get(INSIDE) or not own_network_usable():
        pytest.skip("run directly: no private network namespace here")
    command = (
        "ip link set lo up && exec "
        f"{sys.executable} -m pytest -q -p no:randomly {os.path.join(HERE, path)}"
    )
    env = dict(os.environ, **{INSIDE: "1"})
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", command],
        capture_output=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(HERE)),
        timeout=300,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output
    assert " passed" in output and "failed" not in output, output
