"""
The fixed-port test files, each in a network namespace of its own (see
conftest.py), their slowest tests apart (compat_ports.fixed_port_runs).
"""

import os
import shlex
import subprocess
import sys

import pytest
from compat_ports import INSIDE, ROOT, fixed_port_runs, own_network_usable

RUNS = fixed_port_runs()


@pytest.mark.parametrize("args", [a for _, a in RUNS], ids=[n for n, _ in RUNS])
def test_in_own_network(args):
    if os.environ.get(INSIDE) or not own_network_usable():
        pytest.skip("run directly: no private network namespace here")
    command = "ip link set lo up && exec " + shlex.join(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args]
    )
    env = dict(os.environ, **{INSIDE: "1"})
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", command],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output
    assert " passed" in output and "failed" not in output, output
