"""
A handler's SystemExit in a bridge embedded in another application stops
the bridge's own service, never the host's reactor (the bridge that is the
process, under twistd or IgorServer.run_forever, stops its reactor: see
test_origin_limits.test_system_exit_closes_stream_then_stops_gracefully).
"""

import json
import socket

import pytest_twisted
import websocket
from twisted.application.service import MultiService, Service
from twisted.internet import reactor, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.web.server import Site

from twistbridge import Bridge


def shutdown(out, data, **kwargs):
    out.send("bye")
    raise SystemExit()


def echo(out, data, **kwargs):
    out.send(data)


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class HostListener(Service):
    """The host application's own listener: an echo port."""

    def startService(self):
        Service.startService(self)
        self.port = reactor.listenTCP(
            0, Factory.forProtocol(Echo), interface="127.0.0.1"
        )

    def stopService(self):
        Service.stopService(self)
        return self.port.stopListening()


def host_echo(port, data=b"still here"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        received = b""
        while len(received) < len(data):
            received += s.recv(64)
        return received


def ask_to_exit(url):
    """Send the shutdown action; return what the client then reads, to the close."""
    ws = websocket.create_connection(url, timeout=10)
    try:
        ws.send(json.dumps({"streamId": "igor_shutdown", "action": "shutdown"}))
        messages = [json.loads(ws.recv()), json.loads(ws.recv())]
        frame = ws.recv_data_frame(control_frame=True)[1]
        return messages, frame.opcode, int.from_bytes(frame.data[:2], "big")
    finally:
        ws.close()


def refused(address):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest_twisted.ensureDeferred
async def test_system_exit_stops_the_embedded_bridge_and_the_host_runs_on():
    bridge = Bridge(
        port="tcp:0:interface=127.0.0.1",
        igor_port="tcp:0:interface=127.0.0.1",
        bgpy_port="none",
    )
    bridge.igor_action("shutdown", shutdown, run_in="reactor")
    host = MultiService()
    listener = HostListener()
    listener.setServiceParent(host)
    service = bridge.service()
    service.setServiceParent(host)
    host.startService()
    try:
        addresses = {
            name: svc.status()["address"] for name, svc in service.listeners.items()
        }
        assert sorted(addresses) == ["http", "igor"]
        messages, opcode, code = await threads.deferToThread(
            ask_to_exit, f"ws://{addresses['igor']}/"
        )
        assert messages == [
            {"streamId": "igor_shutdown", "data": "bye"},
            {"streamId": "igor_shutdown", "close": True},
        ]
        # The bridge's service went away (Igor says 1001 "going away") ...
        assert (opcode, code) == (websocket.ABNF.OPCODE_CLOSE, 1001)
        assert not service.running
        assert {name: svc.status() for name, svc in service.listeners.items()} == {
            "http": {"up": False, "address": None},
            "igor": {"up": False, "address": None},
        }
        for address in addresses.values():
            assert await threads.deferToThread(refused, address)
        # ... while the host's reactor and its own listener run on.
        assert reactor.running and host.running and listener.running
        port = listener.port.getHost().port
        assert await threads.deferToThread(host_echo, port) == b"still here"
    finally:
        await host.stopService()
    assert not bridge.offloader.running


@pytest_twisted.ensureDeferred
async def test_system_exit_in_a_mounted_resource_stops_nothing():
    """A bridge without a service of its own (its resource in a host's site)."""
    bridge = Bridge()
    bridge.igor_action("shutdown", shutdown, run_in="reactor")
    bridge.igor_action("echo", echo, run_in="reactor")
    port = reactor.listenTCP(0, Site(bridge.resource()), interface="127.0.0.1")
    url = f"ws://127.0.0.1:{port.getHost().port}/ws"
    try:
        ws = await threads.deferToThread(websocket.create_connection, url, timeout=10)
        try:
            await threads.deferToThread(
                ws.send, json.dumps({"streamId": "x", "action": "shutdown"})
            )
            assert json.loads(await threads.deferToThread(ws.recv)) == {
                "streamId": "x",
                "data": "bye",
            }
            assert json.loads(await threads.deferToThread(ws.recv)) == {
                "streamId": "x",
                "close": True,
            }
            # The same connection is still served.
            await threads.deferToThread(
                ws.send, json.dumps({"streamId": "y", "action": "echo", "data": 1})
            )
            assert json.loads(await threads.deferToThread(ws.recv)) == {
                "streamId": "y",
                "data": 1,
            }
        finally:
            await threads.deferToThread(ws.close)
        assert reactor.running
        assert bridge.runtime().built_service() is None
    finally:
        await port.stopListening()
        await bridge.offloader.stopService()
        for call in reactor.getDelayedCalls():
            if call.func == bridge.runtime().igor_hub.ids.expire:
                call.cancel()
