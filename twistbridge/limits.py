"""
The connection limits of a listener, as values.

L{ListenerLimits} says when a new connection is refused: past
C{max_connections} open connections on that listener, or
C{max_connections_per_client} from one client address.  A refused
connection gets the listener's refusal (for HTTP, L{HTTP_REFUSAL}: a C{503}
response; for the others nothing) and is closed at once, while the
connections already open go on undisturbed.  The factory wrapper that
enforces them is L{twistbridge.listeners.ConnectionLimits}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

#: What a refused HTTP (or WebSocket) client reads before the connection closes.
HTTP_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 44\r\n"
    b"Connection: close\r\n\r\n"
    b'{"error": "too many connections, try again"}'
)


@dataclass(frozen=True)
class ListenerLimits:
    """
    The connection limits of one listener.

    @ivar max_connections: open connections allowed on the listener (0: no
        limit).
    @ivar max_connections_per_client: open connections allowed from one
        client address (0: no limit).
    @ivar refusal: bytes written to a refused connection before it is closed.
    """

    max_connections: int = 0
    max_connections_per_client: int = 0
    refusal: bytes = b""

    @classmethod
    def of(cls, settings: Any, refusal: bytes = b"") -> ListenerLimits:
        """The limits that C{settings} (a L{twistbridge.config.Settings}) set."""
        return cls(
            settings.max_connections, settings.max_connections_per_client, refusal
        )

    def refusal_reason(self, open_total: int, open_from_client: int) -> Optional[str]:
        """
        Why a new connection is refused when C{open_total} connections are
        open on the listener and C{open_from_client} from its client, in a
        few words; L{None} to accept it.
        """
        if self.max_connections and open_total >= self.max_connections:
            return "listener full"
        if (
            self.max_connections_per_client
            and open_from_client >= self.max_connections_per_client
        ):
            return "too many from this client"
        return None
