"""
The originals' tests and examples listen on fixed ports (Igor 5678 and 8080,
izzati 5020, flaskJSONRPCServer 7001-7003), which other programs on the
machine may hold.  Where unprivileged network namespaces work, those test
files run in a namespace of their own (``unshare -rn``, loopback only) from
``test_fixed_ports.py``, and are deselected here; elsewhere they run
directly, waiting for their ports to be free.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from compat_ports import FIXED_PORT_FILES, INSIDE, own_network_usable  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Leave the fixed-port files to test_fixed_ports.py when it can isolate them."""
    if os.environ.get(INSIDE) or not own_network_usable():
        return
    fixed = {os.path.join(HERE, f) for f in FIXED_PORT_FILES}
    dropped = [i for i in items if str(i.fspath) in fixed]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if str(i.fspath) not in fixed]
