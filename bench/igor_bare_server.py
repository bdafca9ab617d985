"""
The ceiling for bench/igor_bench.py: a bare autobahn server speaking Igor's
JSON (request -> data -> close), nothing else.  TCP_NODELAY is set on each
connection, as twistbridge does (autobahn's own call comes too early).
With IGOR_BARE_PLAIN_LOG=1 it also drops autobahn's colored debug strings,
as twistbridge does: the ceiling for the same autobahn work.
"""

import json
import os
import sys

if os.environ.get("IGOR_BARE_PLAIN_LOG"):
    # What twistbridge does: no click-colored strings for autobahn's debug
    # log calls (built on every frame even with debug logging off).
    import autobahn.util

    autobahn.util._HAS_CLICK = False

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor


class Echo(WebSocketServerProtocol):
    def connectionMade(self):
        WebSocketServerProtocol.connectionMade(self)
        self.transport.setTcpNoDelay(True)

    def onMessage(self, payload, isBinary):
        m = json.loads(payload)
        sid = m["streamId"]
        self.sendMessage(json.dumps({"streamId": sid, "data": m.get("data")}).encode())
        self.sendMessage(json.dumps({"streamId": sid, "close": True}).encode())


factory = WebSocketServerFactory()
factory.protocol = Echo
factory.noisy = False
port = reactor.listenTCP(
    int(sys.argv[1]) if len(sys.argv) > 1 else 0, factory, interface="127.0.0.1"
)
print(f"listening on {port.getHost().port}", flush=True)
reactor.run()
