"""
In-memory connections: a client protocol and a server protocol joined by
two C{twisted.test.iosim.FakeTransport}s, and the pumps that move their
bytes when the test client flushes.
"""

from __future__ import annotations

import itertools
from typing import Any, List

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.test.iosim import FakeTransport, IOPump

__all__ = ["Pumps", "transport_of"]

_ports = itertools.count(40000)


class Pumps:
    """
    The open in-memory connections of one test client.

    @ivar reactor: the test reactor (its clock is advanced by 0 on each
        pump, which runs C{callLater(0, ...)} calls).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._pumps: List[IOPump] = []

    def connect(
        self, factory: Any, client: Any, host: str = "127.0.0.1", port: int = 5020
    ) -> IOPump:
        """
        Join a protocol of the listener's C{factory} and C{client}, as a TCP
        connection from 127.0.0.1 to C{host}:C{port} would.

        @raise ConnectionRefusedError: the factory built no protocol.
        """
        peer = IPv4Address("TCP", "127.0.0.1", next(_ports))
        local = IPv4Address("TCP", host, port)
        server = factory.buildProtocol(peer)
        if server is None:
            raise ConnectionRefusedError(f"the {host}:{port} listener refused")
        server_io = FakeTransport(server, True, hostAddress=local, peerAddress=peer)
        client_io = FakeTransport(client, False, hostAddress=peer, peerAddress=local)
        server.makeConnection(server_io)
        client.makeConnection(client_io)
        pump = IOPump(client, server, client_io, server_io, False, clock=self.reactor)
        self._pumps.append(pump)
        return pump

    def pump(self) -> bool:
        """Move what every connection has written; whether anything moved."""
        moved = False
        for p in list(self._pumps):
            if _quiet(p.clientIO) and _quiet(p.serverIO):
                continue
            if p.pump(advanceClock=False):
                moved = True
            elif p.serverIO.disconnected and p.clientIO.disconnected:
                self._pumps.remove(p)
        return moved

    def __len__(self) -> int:
        return len(self._pumps)


def transport_of(protocol: Protocol) -> FakeTransport:
    """
    The in-memory transport L{Pumps.connect} gave C{protocol}.

    @raise AssertionError: C{protocol} was never connected.
    """
    transport = protocol.transport
    assert isinstance(transport, FakeTransport), f"{protocol!r} is not connected"
    return transport


def _quiet(io: FakeTransport) -> bool:
    """Nothing for C{IOPump.pump} to do on this side (a cheap check first)."""
    # FakeTransport's flags start as 0, then become True.
    return (
        not io.stream
        and (bool(io.disconnected) or not io.disconnecting)
        and (io.producer is None or bool(io.streamingProducer))
    )
