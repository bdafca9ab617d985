"""
A plain Python script that serves a bridge without twistd.

    python embed_script.py 5020
"""

import sys

from twisted.internet import reactor

from twistbridge import Bridge

bridge = Bridge(
    port=sys.argv[1] if len(sys.argv) > 1 else 5020, igor_port="none", bgpy_port="none"
)


@bridge.rpc_function
def add(a, b):
    """Return a + b."""
    return a + b


svc = bridge.service()
svc.startService()
reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
reactor.run()
