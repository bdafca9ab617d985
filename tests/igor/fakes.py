"""
The Igor tests' fakes, in one place: a reactor that is a clock, an
offloader whose thread calls wait for the test, a connection that records
what it is sent, and an autobahn protocol over an in-memory transport.
"""

import json

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from twistbridge.offload import call_in_reactor


class FakeReactor(Clock):
    """A clock that counts C{stop()} calls and runs C{callFromThread} now."""

    running = True

    def __init__(self):
        Clock.__init__(self)
        self.stops = 0

    def stop(self):
        self.stops += 1

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class FakeOffloader:
    """Reactor handlers run now; thread handlers wait for the test to fire them."""

    def __init__(self):
        self.pending = []

    def call(self, handler, *args, **kwargs):
        if handler.run_in == "reactor":
            return call_in_reactor(handler.func, *args, **kwargs)
        d = defer.Deferred()
        self.pending.append((d, handler, args, kwargs))
        return d

    def in_thread(self, func, *args, **kwargs):
        """Large-message parsing: runs when the test fires it."""
        d = defer.Deferred()
        self.pending.append((d, func, args, kwargs))
        return d


class FakeConn:
    """A hub connection recording the messages it is sent, decoded."""

    def __init__(self):
        self.client_id = None
        self.written = []
        self.gone_away = 0
        self.aborted = 0
        self.paused = 0
        self.resumed = 0

    def write(self, payload):
        self.written.append(json.loads(payload))

    def go_away(self):
        self.gone_away += 1

    def abort(self):
        self.aborted += 1

    def pause_reading(self):
        self.paused += 1

    def resume_reading(self):
        self.resumed += 1


def message(action, data=None, stream="s"):
    """One client message, encoded."""
    return json.dumps({"streamId": stream, "action": action, "data": data}).encode()


def attach(hub):
    """A new L{FakeConn}, attached to C{hub}."""
    conn = FakeConn()
    hub.attach(conn)
    return conn


def echo(out, data, **kwargs):
    out.send(data)


def in_memory(factory):
    """
    A protocol of C{factory} connected to a L{StringTransport}, as from
    127.0.0.1: C{(protocol, transport)}.  Close it with L{lose}.
    """
    peer = IPv4Address("TCP", "127.0.0.1", 1)
    proto = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    proto.makeConnection(transport)
    # A TCP transport lets autobahn unregister a producer it never
    # registered; StringTransport insists on one.
    transport.registerProducer(proto, True)
    return proto, transport


def lose(proto):
    """The connection of an L{in_memory} protocol ends cleanly."""
    proto.connectionLost(Failure(ConnectionDone()))
