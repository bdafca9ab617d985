"""
An existing Twisted application (a .tac file) that adopts a bridge's service.

    twistd -n -y embed_service.py

The application already ran a service of its own (here a heartbeat every
second); ``bridge.service()`` joins it, with every listener, the thread and
process pools, Igor processes and the bgpy tasks, and stops with it.
"""

import os

from twisted.application import internet, service
from twisted.logger import Logger

from twistbridge import Bridge

log = Logger()

# Ports come from the environment so that several copies can run at once.
bridge = Bridge(
    port=os.environ.get("EMBED_HTTP_PORT", "5020"),
    igor_port=os.environ.get("EMBED_IGOR_PORT", "none"),
    bgpy_port=os.environ.get("EMBED_BGPY_PORT", "none"),
)


@bridge.rpc_function
def add(a, b):
    """Return a + b."""
    return a + b


beats = {"count": 0}


@bridge.rpc_function(run_in="reactor")
def heartbeats():
    """How many heartbeats the application's own service has logged."""
    return beats["count"]


def heartbeat():
    """The application's own periodic work."""
    beats["count"] += 1
    log.info("heartbeat {count}", count=beats["count"])


application = service.Application("embedded")
internet.TimerService(1.0, heartbeat).setServiceParent(application)
bridge.service().setServiceParent(application)
