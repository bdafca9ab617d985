"""
An existing Twisted application with a web site of its own (a .tac file):
the site mounts the bridge's resource under /bridge/, and the bridge's
service, without an HTTP listener of its own, brings the rest: the Igor and
bgpy ports, the bgpy tasks and the pools.

    twistd -n -y embed_site_service.py
"""

import os

from twisted.application import service, strports
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from twistbridge import Bridge, respond
from twistbridge.web import BridgeRequest

# Ports come from the environment so that several copies can run at once.
SITE_PORT = os.environ.get("EMBED_SITE_PORT", "8080")
bridge = Bridge(
    port="none",  # the site below serves the bridge's HTTP side
    igor_port=os.environ.get("EMBED_IGOR_PORT", "5678"),
    bgpy_port=os.environ.get("EMBED_BGPY_PORT", "54321"),
)


@bridge.rpc_function
def add(a, b):
    """Return a + b."""
    return a + b


@bridge.igor_action("echo")
def echo(out, data, **kwargs):
    """Send the data back."""
    out.send(data)


def init_task():
    """The first state: the service runs it when it starts."""
    return {"count": 0}


def exec_task(client, state, exec_args):
    """Count; answer the count when asked."""
    state["count"] += 1
    if exec_args.get("await_response"):
        respond(client, dict(state))
    return state


def exit_task(client, state, exit_args):
    """Nothing to clean up."""


bridge.bgpy_tasks(init_task, exec_task, exit_task)

# The site as it was, plus one putChild.
root = Resource()
root.putChild(b"", Data(b"<h1>An existing site</h1>", "text/html; charset=utf-8"))
root.putChild(b"bridge", bridge.resource())
site = Site(root, requestFactory=BridgeRequest)
site.timeOut = bridge.settings.idle_timeout

application = service.Application("site with a bridge")
listen = f"tcp:{SITE_PORT}:interface=127.0.0.1"
strports.service(listen, site).setServiceParent(application)
bridge.service().setServiceParent(application)
