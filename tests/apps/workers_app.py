"""An app for tests/test_workers.py: which worker answers, and a slow call."""

import os

from twisted.internet import task
from twisted.logger import Logger

from twistbridge import Bridge

bridge = Bridge()
log = Logger()


@bridge.rpc_function(run_in="reactor")
def pid():
    """The process id of the worker that answered."""
    return os.getpid()


@bridge.rpc_function(run_in="reactor")
def slow(seconds):
    """Answer C{[pid, "done"]} after C{seconds}, on the reactor's clock."""
    from twisted.internet import reactor

    log.info("slow call started")
    return task.deferLater(reactor, float(seconds), lambda: [os.getpid(), "done"])


@bridge.rpc_function(run_in="reactor")
def echo(value):
    return value


#: The same, with the workers asked for by the app: Bridge(workers=2).
two = Bridge(workers=2)
two.rpc_function(run_in="reactor")(pid)
