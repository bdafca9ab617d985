"""
The originals' tests and examples listen on fixed ports (Igor 5678 and 8080,
izzati 5020, flaskJSONRPCServer 7001-7003), which other programs on the
machine may hold, and bgpy's own tests run a server and its client at import
time.  Where unprivileged network namespaces work, those test files run in a
namespace of their own (``unshare -rn``, loopback only) from
``test_fixed_ports.py``, and are not collected here (so no worker imports
them); elsewhere they run directly, waiting for their ports to be free.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from compat_ports import INSIDE, isolated_files, own_network_usable  # noqa: E402

_ISOLATED = {os.path.join(HERE, f) for f in isolated_files()}


def pytest_ignore_collect(collection_path, config):
    """Leave the isolated files to test_fixed_ports.py when it can isolate them
    (a file named on the command line is still collected: pytest asks this
    hook only about the files it finds)."""
    if str(collection_path) not in _ISOLATED:
        return None
    if os.environ.get(INSIDE) or not own_network_usable():
        return None
    return True
