"""
The fixed-port test files and bgpy's own, each in a network namespace of its
own (see conftest.py), their slowest tests apart
(compat_ports.fixed_port_runs).

The runs wait on the original programs' own pauses, not on the CPU: they are
all started at once, by the first of these tests, and each test then checks
its own run.  The tests share one xdist group, so one worker holds the runs.
"""

import os
import shlex
import subprocess
import sys
import tempfile

import pytest
from compat_ports import BGPY_OWN_RUN, INSIDE, ROOT, fixed_port_runs, own_network_usable

RUNS = fixed_port_runs()

pytestmark = [pytest.mark.xdist_group("fixed-ports"), pytest.mark.long]


# bgpy's own client reads each frame in one C{recv} and takes two frames
# that arrived before it read as one corrupt frame: bgpy's server (and
# ours, alike) writes the second 0.1 s after the first, so the client must
# be scheduled within 0.1 s.  Its run is put ahead of the suite's other
# work where that is allowed (root), as the client of a real deployment
# is not competing with four test workers on two cores.
def _ahead():
    try:
        os.nice(-10)
    except OSError:
        pass  # not allowed here: the run keeps the default priority


@pytest.fixture(scope="module")
def started_runs():
    """Each run's pytest in its own namespace, all started together:
    name -> (its output file, its Popen)."""
    if os.environ.get(INSIDE) or not own_network_usable():
        pytest.skip("run directly: no private network namespace here")
    env = dict(os.environ, **{INSIDE: "1"})
    runs = {}
    for name, args in RUNS:
        # (to a file: a run is never held up by an output nobody reads yet)
        output = tempfile.TemporaryFile()
        command = "ip link set lo up && exec " + shlex.join(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *args]
        )
        runs[name] = (
            output,
            subprocess.Popen(
                ["unshare", "-rn", "sh", "-c", command],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                preexec_fn=_ahead if name == BGPY_OWN_RUN else None,
            ),
        )
    yield runs
    for output, process in runs.values():
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()


@pytest.mark.parametrize("name", [n for n, _ in RUNS])
def test_in_own_network(started_runs, name):
    file, process = started_runs[name]
    process.wait(timeout=300)
    file.seek(0)
    output = file.read().decode()
    assert process.returncode == 0, output
    assert " passed" in output and "failed" not in output, output
