"""ConnectionLimits (twistbridge.listeners) over real loopback sockets."""

import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineReceiver

from twistbridge.listeners import ConnectionLimits


class Echo(LineReceiver):
    def lineReceived(self, line):
        self.sendLine(line)


class Client(Protocol):
    def __init__(self):
        self.received = b""
        self.closed = defer.Deferred()
        self.got_line = defer.Deferred()

    def dataReceived(self, data):
        self.received += data
        if b"\r\n" in self.received and not self.got_line.called:
            self.got_line.callback(self.received)

    def connectionLost(self, reason):
        self.closed.callback(self.received)


async def until(condition, timeout=5.0):
    """Wait, in the reactor, until condition() is true (bounded)."""
    waited = 0.0
    while not condition():
        if waited > timeout:
            raise TimeoutError("condition not reached")
        await task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


async def connect(port):
    client = Client()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


async def round_trip(client, line):
    client.transport.write(line + b"\r\n")
    return await client.got_line


@pytest_twisted.ensureDeferred
async def test_total_limit_refuses_and_recovers():
    limits = ConnectionLimits(
        Factory.forProtocol(Echo), max_connections=2, refusal=b"full\r\n", name="t"
    )
    port = reactor.listenTCP(0, limits, interface="127.0.0.1")
    try:
        number = port.getHost().port
        a, b = await connect(number), await connect(number)
        assert await round_trip(a, b"a") == b"a\r\n"
        assert await round_trip(b, b"b") == b"b\r\n"
        refused = await connect(number)
        assert await refused.closed == b"full\r\n"
        assert limits.open == 2 and limits.refused == 1
        # The open ones never noticed.
        a.got_line = defer.Deferred()
        a.received = b""
        assert await round_trip(a, b"again") == b"again\r\n"
        b.transport.loseConnection()
        await b.closed
        await until(lambda: limits.open == 1)
        c = await connect(number)
        assert await round_trip(c, b"c") == b"c\r\n"
        for client in (a, c):
            client.transport.loseConnection()
            await client.closed
        await until(lambda: limits.open == 0)
        assert limits.per_client == {}
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_per_client_limit():
    limits = ConnectionLimits(
        Factory.forProtocol(Echo), max_connections_per_client=1, name="t"
    )
    port = reactor.listenTCP(0, limits, interface="127.0.0.1")
    try:
        number = port.getHost().port
        a = await connect(number)
        assert await round_trip(a, b"x") == b"x\r\n"
        assert limits.per_client == {"127.0.0.1": 1}
        refused = await connect(number)
        assert await refused.closed == b""
        a.transport.loseConnection()
        await a.closed
        await until(lambda: limits.per_client == {})
    finally:
        await port.stopListening()
