"""
Connection limits shared by every listener.

L{ConnectionLimits} wraps a listener's factory: past C{max_connections} open
connections on that listener, or C{max_connections_per_client} from one
client address, a new connection gets the listener's refusal (for HTTP a
C{503} response, for the others nothing) and is closed at once, while the
connections already open go on undisturbed.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet.interfaces import IAddress, IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

log = Logger()

HTTP_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 44\r\n"
    b"Connection: close\r\n\r\n"
    b'{"error": "too many connections, try again"}'
)


class _Refuse(Protocol):
    """Write the refusal and close."""

    def __init__(self, refusal: bytes) -> None:
        self.refusal = refusal

    def connectionMade(self) -> None:
        assert self.transport is not None  # (set before connectionMade)
        if self.refusal:
            self.transport.write(self.refusal)
        self.transport.loseConnection()


def _peer_host(address: object) -> str:
    return str(getattr(address, "host", address))


class _ClientWrapper(ProtocolWrapper):
    """A connection that was let in, with the client address it counts for."""

    _twistbridge_host: Optional[str] = None


class ConnectionLimits(WrappingFactory):
    """
    Limit the open connections of one listener, in all and per client address.

    @ivar max_connections: open connections allowed on this listener (0: no
        limit).
    @ivar max_connections_per_client: open connections allowed from one client
        address (0: no limit).
    @ivar refusal: bytes written to a refused connection before it is closed.
    """

    protocol = _ClientWrapper

    def __init__(
        self,
        wrapped: IProtocolFactory,
        max_connections: int = 0,
        max_connections_per_client: int = 0,
        refusal: bytes = b"",
        name: str = "",
    ) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]  # (Twisted's)
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.refusal = refusal
        self.name = name
        self.per_client: Dict[str, int] = {}
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        # Behave like the wrapped factory for everything else (e.g. a Site's
        # attributes read by code that holds the listener's factory).
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.wrappedFactory, name)

    @property
    def open(self) -> int:
        """The number of open connections."""
        return len(self.protocols)

    # A refused connection gets a plain protocol, not a wrapper.
    def buildProtocol(  # type: ignore[override]
        self, addr: Optional[IAddress]
    ) -> Optional[Protocol]:
        """Build the wrapped protocol, or a refusal when over a limit."""
        host = _peer_host(addr)
        over_total = (
            self.max_connections and len(self.protocols) >= self.max_connections
        )
        over_client = (
            self.max_connections_per_client
            and self.per_client.get(host, 0) >= self.max_connections_per_client
        )
        if over_total or over_client:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warn(
                    "{listener}: refused a connection from {host} ({why}; "
                    "{refused} refused so far)",
                    listener=self.name,
                    host=host,
                    why="listener full" if over_total else "too many from this client",
                    refused=self.refused,
                )
            return _Refuse(self.refusal)
        protocol = super().buildProtocol(addr)
        if isinstance(protocol, _ClientWrapper):
            protocol._twistbridge_host = host
        return protocol

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        """Count a connection in."""
        super().registerProtocol(p)  # type: ignore[no-untyped-call]  # (Twisted's)
        host = getattr(p, "_twistbridge_host", None)
        if host is not None:
            self.per_client[host] = self.per_client.get(host, 0) + 1

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        """Count a connection out."""
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]  # (Twisted's)
        host = getattr(p, "_twistbridge_host", None)
        if host is not None:
            left = self.per_client.get(host, 1) - 1
            if left:
                self.per_client[host] = left
            else:
                self.per_client.pop(host, None)
