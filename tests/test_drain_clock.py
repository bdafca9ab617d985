"""
Graceful shutdown on a clock: a L{BridgeService} built on a test reactor
binds its listeners on that reactor (no socket opens), and the drain and
its bound are checked to the exact reactor second with C{advance}.
"""

from __future__ import annotations

from typing import Any, List

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge import Bridge
from twistbridge.listeners import ConnectionTracker
from twistbridge.runtime import Runtime
from twistbridge.testing._memory import Pumps
from twistbridge.testing._offload import InlineOffloader
from twistbridge.testing._reactor import TestReactor

REQUEST = b"GET /held HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


class Held(Resource):
    """Answers when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: List[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


class Recorder(Service):
    """A protocol service whose drain ends when the test says so."""

    def __init__(self, events: List[Any], clock: TestReactor) -> None:
        self.events = events
        self.clock = clock
        self.drained: Deferred = Deferred()
        self.setName("recorder")

    def drain(self) -> Deferred:
        """Record the call; fires when the test fires L{drained}."""
        self.events.append(("drain", self.clock.seconds()))
        return self.drained

    def stopService(self) -> None:
        """Record the call."""
        self.events.append(("stop service", self.clock.seconds()))
        Service.stopService(self)


class Client(Protocol):
    """Collects what the server sends."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        """Keep C{data}."""
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        """Note that the server closed or aborted the connection."""
        self.lost = True


class Setup:
    """A started bridge service on a test reactor, recording its drain steps."""

    def __init__(self, **settings: Any) -> None:
        self.bridge = Bridge(
            port="tcp:8080:interface=127.0.0.1",
            igor_port="none",
            bgpy_port="none",
            **settings,
        )
        self.clock = TestReactor()
        self.events: List[Any] = []
        offloader = InlineOffloader(self.clock)
        stop = offloader.stop

        def stop_pools(*args: Any, **kw: Any) -> Any:
            self.events.append(("stop pools", self.clock.seconds()))
            return stop(*args, **kw)

        offloader.stop = stop_pools  # type: ignore[method-assign]
        self.runtime = Runtime(self.bridge, reactor=self.clock, offloader=offloader)
        self.held = Held()
        self.runtime.root.putChild(b"held", self.held)
        self.service = self.runtime.service
        self.recorder = Recorder(self.events, self.clock)
        self.recorder.setServiceParent(self.service)
        self.parent = MultiService()
        self.service.setServiceParent(self.parent)
        self.parent.startService()
        ((port, factory, _, interface),) = self.clock.tcpServers
        assert (port, interface) == (8080, "127.0.0.1")
        self.factory = factory
        listening = self.service.listeners["http"].port
        stop_listening = listening.stopListening

        def stopped_listening() -> Any:
            self.events.append(("stop listening", self.clock.seconds()))
            return stop_listening()

        listening.stopListening = stopped_listening
        self.pumps = Pumps(self.clock)

    def connect(self) -> Client:
        """A new in-memory connection to the HTTP listener's factory."""
        client = Client()
        self.pumps.connect(self.factory, client, port=8080)
        return client

    def pump(self) -> None:
        """Move bytes until both sides are quiet."""
        while self.pumps.pump():
            pass


def test_a_service_on_a_test_reactor_binds_there():
    setup = Setup()
    assert isinstance(setup.factory, ConnectionTracker)
    assert setup.factory is setup.service.listeners["http"].connections
    assert setup.service.listeners["http"].status()["address"] == "0.0.0.0:8080"


def test_stop_waits_for_the_request_in_flight_then_finishes_at_once():
    setup = Setup(shutdown_timeout=5)
    client = setup.connect()
    client.transport.write(REQUEST)
    setup.pump()
    (request,) = setup.held.requests
    stopped = setup.parent.stopService()
    setup.pump()
    assert setup.events == [
        ("stop listening", 0.0),
        ("drain", 0.0),
    ]
    setup.recorder.drained.callback(None)
    assert setup.events[2:] == [("stop service", 0.0)]
    assert setup.service.listeners["http"].status() == {"up": False, "address": None}
    setup.clock.advance(4.5)
    setup.pump()
    assert not stopped.called  # the request is still in flight
    assert not client.lost
    request.write(b"late but whole")
    request.finish()
    setup.pump()
    assert client.lost  # closed once answered: no keep-alive while draining
    head, body = client.received.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert b"Connection: close" in head.split(b"\r\n")
    assert body == b"e\r\nlate but whole\r\n0\r\n\r\n"
    assert stopped.called  # at 4.5s, not at the bound
    assert setup.events[3:] == [("stop pools", 4.5)]
    assert setup.factory.protocols == {}


def test_stop_aborts_what_is_left_exactly_at_the_bound():
    warnings: List[str] = []

    def observe(event: Any) -> None:
        if event.get("log_level") is LogLevel.warn:
            warnings.append(event["log_format"].format(**event))

    globalLogPublisher.addObserver(observe)
    try:
        _aborts_at_the_bound()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert warnings == [
        "still busy after 5s (open connections: {'http': 1}): stopping anyway"
    ]


def _aborts_at_the_bound() -> None:
    setup = Setup(shutdown_timeout=5)
    held = setup.connect()
    held.transport.write(REQUEST)
    setup.pump()
    idle = setup.connect()
    setup.pump()
    stopped = setup.parent.stopService()
    setup.pump()
    assert idle.lost  # idle connections close at once
    assert idle.received == b""
    setup.clock.advance(4.5)
    setup.pump()
    assert not stopped.called
    assert not held.lost
    assert ("stop pools", 4.5) not in setup.events
    setup.clock.advance(0.5)
    setup.pump()
    assert held.lost
    assert held.received == b""  # aborted: no response
    assert stopped.called
    assert setup.events == [
        ("stop listening", 0.0),
        ("drain", 0.0),
        ("stop pools", 5.0),
    ]
    # The protocol service's drain outlived the bound: its stopService was
    # not waited for, and never called by the drain.
    assert setup.factory.protocols == {}


def test_force_during_the_drain_ends_it_at_once():
    setup = Setup(shutdown_timeout=60)
    client = setup.connect()
    client.transport.write(REQUEST)
    setup.pump()
    stopped = setup.parent.stopService()
    setup.pump()
    setup.clock.advance(1)
    assert not stopped.called
    setup.service.force()
    setup.pump()
    assert client.lost
    assert client.received == b""
    assert stopped.called  # at 1s, not at the 60s bound
    assert setup.clock.seconds() == 1
    # The pools are asked to stop at once, waited for by nothing.
    assert setup.events == [
        ("stop listening", 0.0),
        ("drain", 0.0),
        ("stop pools", 1.0),
    ]


def test_listeners_without_a_reactor_bind_on_the_global_one():
    bridge = Bridge(
        port="tcp:0:interface=127.0.0.1", igor_port="none", bgpy_port="none"
    )
    listener = Runtime(bridge).service.listeners["http"]
    # None: the endpoint takes the global reactor when it binds, as before.
    assert listener.endpoint._reactor is None
    assert listener.connections._reactor is None
