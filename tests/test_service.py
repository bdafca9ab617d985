"""Bridge.service() adopted by an existing application, and Bridge.resource()."""

import json

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.web.client import Agent, readBody
from twisted.web.server import Site

from twistbridge import Bridge


async def get_json(url):
    response = await Agent(reactor).request(b"GET", url.encode())
    body = await readBody(response)
    return response.code, json.loads(body)


@pytest_twisted.ensureDeferred
async def test_service_runs_in_an_existing_multiservice():
    bridge = Bridge(
        port="tcp:0:interface=127.0.0.1", igor_port="none", bgpy_port="none"
    )
    parent = MultiService()
    bridge.service().setServiceParent(parent)
    parent.startService()
    try:
        address = bridge.service().listeners["http"].status()["address"]
        code, body = await get_json(f"http://{address}/health")
        assert code == 200
        assert body["status"] == "ok"
        assert body["services"] == {"http": {"up": True, "address": address}}
        assert body["pools"]["threads"]["size"] == 10
    finally:
        await parent.stopService()
    assert bridge.service().listeners["http"].status() == {"up": False, "address": None}


@pytest_twisted.ensureDeferred
async def test_resource_mounts_in_an_existing_site():
    bridge = Bridge()
    port = reactor.listenTCP(0, Site(bridge.resource()), interface="127.0.0.1")
    try:
        address = f"127.0.0.1:{port.getHost().port}"
        code, body = await get_json(f"http://{address}/health")
        # No bridge service runs: the resource answers for the site it is in.
        assert code == 200
        assert body["services"] == {
            "http": {"up": True, "address": address, "mounted": "/"}
        }
    finally:
        await port.stopListening()
        await bridge.offloader.stopService()


def test_service_is_built_once():
    bridge = Bridge(port="tcp:0:interface=127.0.0.1")
    assert bridge.service() is bridge.service()
    assert isinstance(bridge.service(), MultiService)


def test_run_in_validation():
    bridge = Bridge()

    async def coro(out, data, **kw):
        pass

    with pytest.raises(ValueError, match="coroutine"):
        bridge.igor_action("x", coro, run_in="thread")
    with pytest.raises(ValueError, match="run_in must be one of"):
        bridge.rpc_function(lambda: 1, run_in="gpu")


def test_listeners_time_out_on_the_runtimes_reactor():
    # The HTTP site's timeouts and the Igor factories' autobahn timers run on
    # the reactor the runtime was given.
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from twistbridge.runtime import Runtime

    clock = MemoryReactorClock()
    bridge = Bridge(
        port="tcp:0",
        igor_port="tcp:0",
        bgpy_port="none",
        header_timeout=3,
        message_timeout=3,
    )
    bridge.igor_action("echo", lambda out, data, **kw: None, run_in="reactor")
    runtime = Runtime(bridge, reactor=clock)
    listeners = runtime.service.listeners
    site = listeners["http"].connections.wrappedFactory
    igor = listeners["igor"].connections.wrappedFactory
    assert site.reactor is igor.reactor is clock
    assert runtime.root.children[b"ws"]._factory.reactor is clock
    peer = IPv4Address("TCP", "127.0.0.1", 1)
    for factory, answer in ((site, b"HTTP/1.1 408 "), (igor, b"")):
        proto = factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        if factory is igor:
            # autobahn unregisters a producer it never registered (a TCP
            # transport lets it; StringTransport insists on one).
            transport.registerProducer(proto, True)
        proto.dataReceived(b"GET / HTTP/1.1\r\n")
        clock.advance(2.9)
        assert not transport.disconnecting
        clock.advance(0.1)
        assert transport.value().startswith(answer)
        assert transport.disconnecting


def test_use_runtime_serves_through_a_prebuilt_runtime_for_a_while():
    from twistbridge.runtime import Runtime

    bridge = Bridge()
    mine = Runtime(bridge)
    with bridge.use_runtime(mine) as used:
        assert used is True
        assert bridge.runtime() is mine
        assert bridge.offloader is mine.offloader
        with bridge.use_runtime(Runtime(bridge)) as again:
            assert again is False
            assert bridge.runtime() is mine
        assert bridge.runtime() is mine
    served = bridge.runtime()
    assert served is not mine
    with bridge.use_runtime(mine) as used:
        assert used is False
        assert bridge.runtime() is served
    assert bridge.runtime() is served
