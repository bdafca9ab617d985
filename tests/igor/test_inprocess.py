"""The adapter in this process's reactor: one hub per bridge, socket options."""

import json

import pytest_twisted
import websocket
from fakes import echo, in_memory, lose
from twisted.internet import reactor, threads
from twisted.web.server import Site

from twistbridge import Bridge
from twistbridge.igor._protocol import (
    build_factory,
    build_resource,
    unsent_cap,
)


def roundtrip(url, data):
    ws = websocket.create_connection(url, timeout=10)
    try:
        ws.send(json.dumps({"streamId": "s", "action": "echo", "data": data}))
        return [json.loads(ws.recv()), json.loads(ws.recv())]
    finally:
        ws.close()


@pytest_twisted.ensureDeferred
async def test_one_hub_for_both_listeners_and_nodelay():
    bridge = Bridge()
    bridge.igor_action("echo", echo, run_in="reactor")
    factory = build_factory(bridge.runtime().igor_hub, bridge.settings)
    resource = build_resource(bridge.runtime().igor_hub, bridge.settings)
    assert resource._factory.hub is factory.hub is bridge.runtime().igor_hub
    ports = [
        reactor.listenTCP(0, factory, interface="127.0.0.1"),
        reactor.listenTCP(0, Site(_root(resource)), interface="127.0.0.1"),
    ]
    hub = bridge.runtime().igor_hub
    seen = []
    attach = hub.attach

    def spy(conn):
        attach(conn)
        seen.append((conn.client_id, conn.transport.getTcpNoDelay()))

    hub.attach = spy
    try:
        for port, path in zip(ports, ["/", "/ws"]):
            url = f"ws://127.0.0.1:{port.getHost().port}{path}"
            assert await threads.deferToThread(roundtrip, url, path) == [
                {"streamId": "s", "data": path},
                {"streamId": "s", "close": True},
            ]
        assert seen == [(1, True), (2, True)]
    finally:
        for port in ports:
            await port.stopListening()
        for call in reactor.getDelayedCalls():
            if call.func == hub.ids.expire:
                call.cancel()


def _root(ws_resource):
    from twisted.web.resource import Resource

    root = Resource()
    root.putChild(b"ws", ws_resource)
    return root


def test_every_autobahn_option_is_explicit():
    bridge = Bridge(max_message_size="2M", idle_timeout=30, message_timeout=5)
    f = build_factory(bridge.runtime().igor_hub, bridge.settings)
    assert (
        f.allowedOrigins == ["*"] and f.allowNullOrigin is True
    )  # our check is in onConnect
    assert f.maxMessagePayloadSize == f.maxFramePayloadSize == 2 * 1024 * 1024
    assert f.tcpNoDelay is True
    assert f.openHandshakeTimeout == 5.0
    assert (f.autoPingInterval, f.autoPingTimeout) == (30.0, 30.0)
    assert f.perMessageCompressionAccept([object()]) is None
    assert f.unsent_cap == unsent_cap(2 * 1024 * 1024) == 8 * 1024 * 1024
    assert unsent_cap(16 * 1024 * 1024) == 32 * 1024 * 1024
    bridge2 = Bridge(igor_allowed_origin=["https://a.example"])
    assert build_factory(
        bridge2.runtime().igor_hub, bridge2.settings
    ).allowed_origins == ("https://a.example",)


def test_handshake_buffer_never_passes_the_cap():
    # In memory: what autobahn buffers stays empty, ours stops at the cap,
    # and the answer is 431 on the chunk that crossed it.
    from twistbridge.igor._protocol import MAX_HANDSHAKE_SIZE

    bridge = Bridge(igor_takeover="token")
    factory = build_factory(bridge.runtime().igor_hub, bridge.settings)
    assert bridge.runtime().igor_hub.takeover == "token"
    proto, transport = in_memory(factory)
    try:
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        chunk = b"X: " + b"y" * 1019 + b"\r\n"
        fed = 34
        while not transport.value():
            proto.dataReceived(chunk)
            fed += len(chunk)
            assert len(proto.data) == 0
            assert (
                proto._handshake is None or len(proto._handshake) <= MAX_HANDSHAKE_SIZE
            )
        assert MAX_HANDSHAKE_SIZE < fed <= MAX_HANDSHAKE_SIZE + len(chunk)
        assert transport.value().split(b"\r\n", 1)[0] == (
            b"HTTP/1.1 431 Request headers over 65536 bytes"
        )
        assert transport.disconnecting
    finally:
        lose(proto)


def test_frames_per_turn_with_a_clock():
    # 1000 tiny messages in one read: 256 are handled, reading pauses, and
    # the rest follow one reactor turn at a time.
    from twisted.internet.task import Clock

    from twistbridge.config import Settings
    from twistbridge.igor._hub import Hub
    from twistbridge.igor._protocol import FRAMES_PER_TURN, IgorFactory

    clock = Clock()
    hub = Hub({}, None, reactor=clock)
    factory = IgorFactory(hub, Settings())
    proto, transport = in_memory(factory)
    proto.dataReceived(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    assert proto.client_id == 1
    tiny = b"\x81\x82\x00\x00\x00\x00{}"  # a masked text frame: {}
    proto.dataReceived(tiny * 1000)
    assert FRAMES_PER_TURN == 256
    assert proto.refused == 256 and transport.producerState == "paused"

    def next_turn():
        # One reactor turn (Clock.advance would also run the calls that
        # this one schedules).
        (call,) = [c for c in clock.getDelayedCalls() if c.func == proto._next_turn]
        assert call.getTime() == clock.seconds()
        call.cancel()
        proto._next_turn()

    next_turn()
    assert proto.refused == 512 and transport.producerState == "paused"
    next_turn()
    next_turn()
    assert proto.refused == 1000 and transport.producerState == "producing"
    assert not [c for c in clock.getDelayedCalls() if c.func == proto._next_turn]
    lose(proto)
    for call in clock.getDelayedCalls():
        call.cancel()


def test_autobahn_timers_run_on_the_given_reactor():
    # The opening handshake timeout (message_timeout) of a client that sends
    # nothing fires on the factory's reactor, at its exact time.
    from twisted.internet.task import Clock

    clock = Clock()
    bridge = Bridge(message_timeout=5)
    hub = bridge.runtime().igor_hub
    for factory in (
        build_factory(hub, bridge.settings, reactor=clock),
        build_resource(hub, bridge.settings, reactor=clock)._factory,
    ):
        assert factory.reactor is clock
        proto, transport = in_memory(factory)
        clock.advance(4.99)
        assert not transport.disconnecting
        clock.advance(0.01)
        assert transport.disconnecting
        assert proto.wasOpenHandshakeTimeout is True
        assert clock.getDelayedCalls() == []


def test_global_reactor_keeps_autobahns_batched_timers():
    bridge = Bridge()
    for factory in (
        build_factory(bridge.runtime().igor_hub, bridge.settings),
        build_factory(bridge.runtime().igor_hub, bridge.settings, reactor=reactor),
    ):
        assert factory.reactor is reactor
        assert type(factory._batched_timer).__module__ == "txaio._common"
