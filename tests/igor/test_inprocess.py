"""The adapter in this process's reactor: one hub per bridge, socket options."""

import json

import pytest_twisted
import websocket
from twisted.internet import reactor, threads
from twisted.web.server import Site

from twistbridge import Bridge
from twistbridge.igor._protocol import (
    build_factory,
    build_resource,
    get_hub,
    unsent_cap,
)


def echo(out, data, **kwargs):
    out.send(data)


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
    factory = build_factory(bridge)
    resource = build_resource(bridge)
    assert resource._factory.hub is factory.hub is get_hub(bridge)
    ports = [
        reactor.listenTCP(0, factory, interface="127.0.0.1"),
        reactor.listenTCP(0, Site(_root(resource)), interface="127.0.0.1"),
    ]
    hub = get_hub(bridge)
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
            if call.func == hub._expire:
                call.cancel()


def _root(ws_resource):
    from twisted.web.resource import Resource

    root = Resource()
    root.putChild(b"ws", ws_resource)
    return root


def test_every_autobahn_option_is_explicit():
    bridge = Bridge(max_message_size="2M", idle_timeout=30, message_timeout=5)
    f = build_factory(bridge)
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
    assert build_factory(bridge2).allowed_origins == ("https://a.example",)
