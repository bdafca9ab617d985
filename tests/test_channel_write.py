"""
How the bridge's HTTP channel writes its answers: status line, headers and
the first piece of the body in one write, sent on the socket at once when
nothing waits in the transport's buffer (L{twistbridge._internals.write_now}).
The answers themselves are the same bytes as ever: each case below is
asserted byte for byte (only the C{Date} value is blanked).
"""

import re
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import WrappingFactory

from twistbridge import Bridge
from twistbridge._internals import write_now
from twistbridge.listeners import ConnectionLimits
from twistbridge.web import BridgeSite

ONE = b'{"jsonrpc": "2.0", "method": "echo", "params": ["hello"], "id": 1}'
SERVER = b"Server: TwistedWeb/"


def post(body, extra=b"", version=b"HTTP/1.1", host=b"127.0.0.1"):
    return (
        b"POST /rpc %s\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"%sContent-Length: %d\r\n\r\n%s" % (version, host, extra, len(body), body)
    )


def ok(body, close=True, version=b"HTTP/1.1"):
    return (
        b"%s 200 OK\r\n%sServer: TwistedWeb/-\r\nDate: -\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (version, b"Connection: close\r\n" if close else b"", len(body), body)
    )


CLOSE = b"Connection: close\r\n"
HELLO = b'{"jsonrpc":"2.0","result":"hello","id":1}'
FOREIGN = (
    b'{"error": "Host \'evil.example\' is not served here; if this server '
    b"should answer it (behind a reverse proxy, say), start it with "
    b'--allowed-host evil.example"}'
)

CASES = {
    "single": (post(ONE, CLOSE), ok(HELLO)),
    "notification": (
        post(b'{"jsonrpc": "2.0", "method": "echo", "params": ["x"]}', CLOSE),
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n"
        b"Server: TwistedWeb/-\r\nDate: -\r\nContent-Length: 0\r\n\r\n",
    ),
    "batch": (
        post(
            b"[" + ONE + b', {"jsonrpc": "2.0", "method": "echo", "params": [2], '
            b'"id": 2}]',
            CLOSE,
        ),
        ok(
            b'[{"jsonrpc":"2.0","result":"hello","id":1},{"jsonrpc":"2.0","result":2,"id":2}]'
        ),
    ),
    "parse-error": (
        post(b'{"jsonrpc', CLOSE),
        ok(
            b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}'
        ),
    ),
    "http-1.0": (
        post(ONE, version=b"HTTP/1.0"),
        ok(HELLO, close=False, version=b"HTTP/1.0"),
    ),
    "pipelined": (
        post(ONE) + post(ONE.replace(b'"id": 1', b'"id": 2'), CLOSE),
        ok(HELLO, close=False) + ok(HELLO.replace(b'"id":1', b'"id":2')),
    ),
    "thread-pool": (
        post(b'{"jsonrpc": "2.0", "method": "techo", "params": ["t"], "id": 3}', CLOSE),
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nServer: TwistedWeb/-\r\n"
        b"Date: -\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n25\r\n{"jsonrpc":"2.0","result":"t","id":3}'
        b"\r\n0\r\n\r\n",
    ),
    "foreign-host": (
        post(ONE, CLOSE, host=b"evil.example"),
        b"HTTP/1.1 421 Misdirected Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(FOREIGN), FOREIGN),
    ),
    "gzip-accepted": (post(ONE, b"Accept-Encoding: gzip\r\n" + CLOSE), ok(HELLO)),
    "head": (
        b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        None,  # checked below: headers only
    ),
}


def read_to_close(sock):
    """What C{sock} receives until the other side closes."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port, raw):
    """Send C{raw}, read until the server closes; C{Date} and the Twisted
    version blanked."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        out = read_to_close(sock)
    out = re.sub(rb"Date: [^\r]*", b"Date: -", out)
    return re.sub(rb"Server: TwistedWeb/[^\r]*", b"Server: TwistedWeb/-", out)


def bridge_site():
    bridge = Bridge()

    def echo(data):
        return data

    def techo(data):
        return data

    bridge.rpc_function(echo, run_in="reactor")
    bridge.rpc_function(techo)  # a plain def: the thread pool
    return BridgeSite(bridge.resource(), bridge.settings)


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "limits"])
@pytest.mark.parametrize("case", list(CASES))
@pytest_twisted.ensureDeferred
async def test_answers_are_the_same_bytes(case, wrapped):
    site = bridge_site()
    factory = ConnectionLimits(site) if wrapped else site
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        raw, expected = CASES[case]
        got = await threads.deferToThread(exchange, port.getHost().port, raw)
        if expected is None:  # HEAD: the headers of a GET, no body
            head, _, body = got.partition(b"\r\n\r\n")
            assert body == b""
            assert head.startswith(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nServer: TwistedWeb/-\r\n"
                b"Date: -\r\nContent-Type: application/json\r\nContent-Length: "
            )
        else:
            assert got == expected
    finally:
        await port.stopListening()


class _Held(Protocol):
    """A server protocol that hands its connection to the test."""

    def connectionMade(self):
        self.factory.made.callback(self)


async def _connected(wrap):
    factory = Factory.forProtocol(_Held)
    factory.made = Deferred()
    port = reactor.listenTCP(
        0, WrappingFactory(factory) if wrap else factory, interface="127.0.0.1"
    )
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
    server = await factory.made
    return port, client, server


@pytest.mark.parametrize("wrap", [False, True], ids=["tcp", "wrapped"])
@pytest_twisted.ensureDeferred
async def test_write_now_sends_before_the_reactor_turns(wrap):
    port, client, server = await _connected(wrap)
    try:
        write_now(server.transport, b"at once")
        # No reactor turn in between: the bytes are on the socket already.
        assert client.recv(100) == b"at once"
    finally:
        client.close()
        server.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_write_now_behind_buffered_bytes_keeps_their_order():
    port, client, server = await _connected(False)
    try:
        server.transport.write(b"first ")  # buffered until the reactor writes
        write_now(server.transport, b"second")
        server.transport.loseConnection()

        assert await threads.deferToThread(read_to_close, client) == b"first second"
    finally:
        client.close()
        await port.stopListening()


def test_write_now_on_another_transport_is_its_write():
    transport = StringTransport()
    write_now(transport, b"abc")
    write_now(transport, b"")
    assert transport.value() == b"abc"


def test_in_memory_channel_answers_in_one_write():
    site = bridge_site()
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    writes = []
    write = transport.write
    transport.write = lambda data: (writes.append(data), write(data))
    protocol.makeConnection(transport)
    protocol.dataReceived(post(ONE))
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n" + HELLO)
    assert SERVER in writes[0]
