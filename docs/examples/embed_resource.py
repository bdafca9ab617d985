"""
An existing twisted.web site that mounts a bridge under /bridge/.

    python embed_resource.py 8080

The site keeps its own pages; the bridge answers JSON-RPC at /bridge/rpc,
Igor streams at /bridge/ws, izzati uploads at POST /bridge/ and its health at
/bridge/health.
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from twistbridge import Bridge
from twistbridge.request import BridgeRequest

bridge = Bridge(max_upload_size="10M")


@bridge.izzati
def upload(text, data):
    """Answer with the fields and the file names."""
    return {"status": "yes", "text": text, "files": [f.filename for f in data]}


@bridge.igor_action("echo")
def echo(out, data, **kwargs):
    """Send the data back."""
    out.send(data)


@bridge.rpc_function
def add(a, b):
    """Return a + b."""
    return a + b


# The site as it was before twistbridge: a root with its own pages.
root = Resource()
root.putChild(b"", Data(b"<h1>An existing site</h1>", "text/html; charset=utf-8"))
root.putChild(b"about", Data(b"About this site.", "text/plain; charset=utf-8"))

# One line mounts every HTTP protocol of the bridge.
root.putChild(b"bridge", bridge.resource())


def main(port="8080"):
    """Listen on 127.0.0.1:port (0: any free port) and run the reactor."""
    endpoint = endpoints.serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1")
    # BridgeRequest streams upload bodies to the bridge as they arrive and
    # refuses an oversized one before reading it; the timeout is the
    # bridge's idle timeout, as under twistd bridge.
    site = Site(root, requestFactory=BridgeRequest)
    site.timeOut = bridge.settings.idle_timeout
    listening = endpoint.listen(site)
    listening.addCallback(
        lambda p: print(f"site listening on 127.0.0.1:{p.getHost().port}", flush=True)
    )
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:])
