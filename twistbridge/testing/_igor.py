"""
Igor in memory: autobahn's own WebSocket client protocol, speaking to the
bridge's Igor server protocol over an in-memory connection, so that every
frame is built, masked and parsed as over a socket.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, List, Optional, Set

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol

from twistbridge.testing._memory import transport_of

if TYPE_CHECKING:
    from twistbridge.testing._client import BridgeTestClient

__all__ = ["IgorTestConnection"]

_STATUS = re.compile(rb"^HTTP/1\.1 (\d{3})")


class _Protocol(WebSocketClientProtocol):
    connection: IgorTestConnection

    def dataReceived(self, data: bytes) -> None:
        if self.connection.status is None:
            match = _STATUS.match(data)
            if match:
                self.connection.status = int(match.group(1))
        WebSocketClientProtocol.dataReceived(self, data)

    def onOpen(self) -> None:
        self.connection.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.connection._inbox.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.connection.closed = True
        self.connection.close_code = code
        self.connection.close_reason = reason


class IgorTestConnection:
    """
    One Igor client, in memory::

        ws = client.igor()
        sid = ws.send("echo", "hi")
        assert ws.stream(sid) == [{"streamId": sid, "data": "hi"},
                                  {"streamId": sid, "close": True}]

    Stream ids are C{"1"}, C{"2"}, ... unless given.

    @ivar status: the HTTP status of the handshake (C{101}, or the refusal's).
    @ivar opened: the WebSocket opened.
    @ivar closed: it closed (L{close_code}, L{close_reason}: why).
    """

    def __init__(
        self,
        client: BridgeTestClient,
        url: str,
        origin: Optional[str],
        headers: Optional[dict] = None,
    ) -> None:
        self._client = client
        self._inbox: List[Any] = []
        self._consumed: Set[int] = set()
        self._next_id = 0
        self.status: Optional[int] = None
        self.opened = False
        self.closed = False
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        factory = WebSocketClientFactory(
            url, origin=origin, headers=headers, reactor=client.reactor
        )
        # Every timer of the client is off (its factory's would run on the
        # global reactor): the server's are the ones tests time.
        factory.setProtocolOptions(
            openHandshakeTimeout=0,
            closeHandshakeTimeout=0,
            serverConnectionDropTimeout=0,
            autoPingInterval=0,
            perMessageCompressionOffers=[],
        )
        factory.protocol = _Protocol
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, _Protocol)
        protocol.connection = self
        self.protocol = protocol

    # sending -------------------------------------------------------------

    def send(self, action: str, data: Any = None, stream_id: Any = None) -> Any:
        """
        Send C{{"streamId": stream_id, "action": action, "data": data}} and
        flush; return the stream id.
        """
        if stream_id is None:
            self._next_id += 1
            stream_id = str(self._next_id)
        self.send_raw(
            json.dumps({"streamId": stream_id, "action": action, "data": data})
        )
        return stream_id

    def send_raw(self, text: str, binary: bool = False) -> None:
        """Send one message of any content (to test what the server refuses)."""
        self.protocol.sendMessage(text.encode("utf-8"), isBinary=binary)
        self._client.flush()

    # receiving -----------------------------------------------------------

    def messages(self) -> List[Any]:
        """Flush; every message received and not read yet (now read)."""
        self._client.flush()
        new = [i for i in range(len(self._inbox)) if i not in self._consumed]
        self._consumed.update(new)
        return [self._inbox[i] for i in new]

    def receive(self) -> Any:
        """
        Flush; the next message not read yet.

        @raise LookupError: none came (advance the clock if one is due
            later).
        """
        self._client.flush()
        for i, message in enumerate(self._inbox):
            if i not in self._consumed:
                self._consumed.add(i)
                return message
        closed = f" (closed: {self.close_code} {self.close_reason})"
        raise LookupError(
            "no Igor message is waiting" + (closed if self.closed else "")
        )

    def stream(self, stream_id: Any) -> List[Any]:
        """
        Flush; every message of stream C{stream_id}, which must have closed
        (they count as read).

        @raise LookupError: the stream has not closed.
        """
        self._client.flush()
        mine = [
            i
            for i, m in enumerate(self._inbox)
            if isinstance(m, dict) and m.get("streamId") == stream_id
        ]
        got = [self._inbox[i] for i in mine]
        if not any(m.get("close") for m in got):
            raise LookupError(f"stream {stream_id!r} has not closed: {got}")
        self._consumed.update(mine)
        return got

    def call(self, action: str, data: Any = None) -> List[Any]:
        """L{send} on a new stream, then that L{stream}'s messages."""
        return self.stream(self.send(action, data))

    # closing -------------------------------------------------------------

    def close(self, code: int = 1000, reason: Optional[str] = None) -> None:
        """Close with a closing handshake, and flush."""
        self.protocol.sendClose(code, reason)
        self._client.flush()

    def drop(self) -> None:
        """Drop the connection without a closing handshake (a client gone)."""
        transport_of(self.protocol).abortConnection()
        self._client.flush()
