"""
Raw in-memory connections: bytes to a listener as they are, and what it
answers (a slow client, a malformed request, a half-sent message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List

from twisted.internet.protocol import Protocol

from twistbridge.testing._memory import transport_of

if TYPE_CHECKING:
    from twistbridge.testing._client import BridgeTestClient

__all__ = ["RawConnection"]


class _Collect(Protocol):
    def __init__(self) -> None:
        self.data: List[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class RawConnection:
    """
    Bytes to and from one listener, in memory (L{BridgeTestClient.connect})::

        conn = client.connect("http")
        conn.write(b"GET /health HTTP/1.1\\r\\n")
        client.advance(10)
        assert conn.received.startswith(b"HTTP/1.1 408 ")
    """

    def __init__(self, client: BridgeTestClient) -> None:
        self._client = client
        self.protocol = _Collect()

    def write(self, data: bytes) -> None:
        """Send C{data}, and flush."""
        transport_of(self.protocol).write(data)
        self._client.flush()

    @property
    def received(self) -> bytes:
        """Flush; everything the server wrote so far."""
        self._client.flush()
        return b"".join(self.protocol.data)

    @property
    def closed(self) -> bool:
        """Flush; whether the connection is closed."""
        self._client.flush()
        return self.protocol.lost

    def close(self) -> None:
        """Close the connection, and flush."""
        transport_of(self.protocol).loseConnection()
        self._client.flush()
