"""Which compatibility test files bind fixed ports, and how to isolate them."""

import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
#: The checkout, where the runs start (node ids relative to it).
ROOT = os.path.dirname(os.path.dirname(HERE))

#: Test files, relative to this folder, that bind fixed ports.
FIXED_PORT_FILES = (
    "igor/test_integration.py",
    "izzati/test_izzati.py",
    "izzati/test_readme.py",
    "jsonrpc/test_examples.py",
)

#: The slow tests of those files (node ids relative to this folder), each run
#: in a namespace of its own apart from the rest of its file, so that
#: pytest-xdist's workers run them side by side: they wait on the originals'
#: own pauses, not on the CPU.
SLOW_FIXED_PORT_TESTS = (
    "jsonrpc/test_examples.py::test_parallel_executing",
    "jsonrpc/test_examples.py::test_parallel_executing_manual_config",
    "jsonrpc/test_examples.py::test_restart",
)


#: bgpy's own test files, which start a server and run their client at import
#: time: every pytest-xdist worker imports every test file it collects, and
#: each would run them again.  They run once, together, in a namespace of
#: their own (where they also get bgpy's own ports).
IMPORT_TIME_FILES = (
    "bgpy/test_cli.py",
    "bgpy/test_client_server.py",
    "bgpy/test_file_init.py",
)


#: The name of their run.
BGPY_OWN_RUN = "bgpy's own tests"


def isolated_files():
    """Every test file that test_fixed_ports.py runs in a namespace."""
    return (*FIXED_PORT_FILES, *IMPORT_TIME_FILES)


def fixed_port_runs():
    """
    What test_fixed_ports.py runs, a namespace each: C{(name, pytest
    arguments)}, every test of L{isolated_files} exactly once, from L{ROOT}.
    """

    def node(test):
        return os.path.relpath(os.path.join(HERE, test), ROOT)

    runs = [(slow, [node(slow)]) for slow in SLOW_FIXED_PORT_TESTS]
    for path in FIXED_PORT_FILES:
        split = [t for t in SLOW_FIXED_PORT_TESTS if t.startswith(path + "::")]
        deselect = [arg for t in split for arg in ("--deselect", node(t))]
        runs.append((path + (" (the rest)" if split else ""), [node(path), *deselect]))
    runs.append((BGPY_OWN_RUN, [node(path) for path in IMPORT_TIME_FILES]))
    return runs


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
