"""
Graceful shutdown in-process: a BridgeService adopted by another application
drains its HTTP requests when that application stops it.
"""

from __future__ import annotations

import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge import Bridge
from twistbridge.listeners import ConnectionTracker, innermost_protocol
from twistbridge.web import BridgeSite


class Held(Resource):
    """Answers when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.arrived: Deferred = Deferred()
        self.requests = []

    def render_GET(self, request):
        self.requests.append(request)
        self.arrived.callback(None)
        return NOT_DONE_YET


def make_bridge(**settings):
    bridge = Bridge(
        port="tcp:0:interface=127.0.0.1", igor_port="none", bgpy_port="none", **settings
    )
    held = Held()
    bridge.resource().putChild(b"held", held)
    return bridge, held


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_the_request_in_flight_and_refuses_new_ones():
    bridge, held = make_bridge()
    parent = MultiService()
    bridge.service().setServiceParent(parent)
    parent.startService()
    address = bridge.service().listeners["http"].status()["address"]
    response_d = Agent(reactor).request(b"GET", f"http://{address}/held".encode())
    await held.arrived
    stopped = parent.stopService()
    await deferLater(reactor, 0.05, lambda: None)
    assert not stopped.called  # waiting for the request
    try:
        await Agent(reactor).request(b"GET", f"http://{address}/health".encode())
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("a new connection was accepted while draining")
    (request,) = held.requests
    request.write(b"late but whole")
    request.finish()
    response = await response_d
    assert response.code == 200
    assert await readBody(response) == b"late but whole"
    await stopped
    assert bridge.offloader.running == 0


@pytest_twisted.ensureDeferred
async def test_stop_aborts_what_is_left_at_the_bound():
    bridge, held = make_bridge(shutdown_timeout=0.2)
    parent = MultiService()
    bridge.service().setServiceParent(parent)
    parent.startService()
    address = bridge.service().listeners["http"].status()["address"]
    response_d = Agent(reactor).request(b"GET", f"http://{address}/held".encode())
    await held.arrived
    started = reactor.seconds()
    await parent.stopService()
    assert 0.2 <= reactor.seconds() - started < 2
    try:
        await response_d
    except Exception as e:  # the connection was aborted
        assert "ResponseNeverReceived" in type(e).__name__
    else:
        raise AssertionError("the held request got a response")


def test_innermost_protocol_sees_through_wrappers():
    bridge = Bridge()
    tracker = ConnectionTracker(BridgeSite(bridge.resource(), bridge.settings))
    protocol = tracker.buildProtocol(None)
    assert isinstance(innermost_protocol(protocol), HTTPChannel)
    assert innermost_protocol("anything else") == "anything else"
