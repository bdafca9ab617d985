"""
bgpy in memory: a client of the bgpy port in either wire format -- JSON
lines, or bgpy's own (a 16-byte length header, then base64 of a pickled
C{bgpy.core.message.Message}) -- over an in-memory connection to the
bridge's L{twistbridge.bgpy._service.BgpyFactory}.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List

from twisted.internet.protocol import Protocol

from twistbridge.bgpy._core import (
    BgpyError,
    FrameDecoder,
    Message,
    MessageType,
    ack,
    encode_bgpy,
)
from twistbridge.bgpy._pickle import decode_frame
from twistbridge.testing._memory import transport_of

if TYPE_CHECKING:
    from twistbridge.testing._client import BridgeTestClient

__all__ = ["BgpyTestConnection"]

#: The longest the server paces bgpy-format frames (its BUFFER_TIME and
#: RECEIVE_PAUSE are shorter): L{BgpyTestConnection.call} moves the clock
#: by at most this much, in steps, while it waits for answers.
PACING_WINDOW = 1.0


class _Protocol(Protocol):
    def __init__(self, connection: BgpyTestConnection) -> None:
        self.connection = connection
        self.buffer = b""
        self.frames = FrameDecoder(1 << 30)
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.connection._received(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class BgpyTestConnection:
    """
    One bgpy client, in memory.  Answers are dicts C{{"type": "OK", "args":
    {...}}} in both formats::

        bg = client.bgpy()                       # JSON lines
        bg.call("INIT")                          # the answers, in order
        bg.call("EXEC", command="increase", value_change=10)

    On bgpy's format (C{client.bgpy(format="bgpy")}) a second response (one
    whose args carry C{await_response}) is acknowledged as bgpy's own client
    does, and L{call} moves the clock through the server's pacing of frames.

    @ivar format: C{"json"} or C{"bgpy"}.
    @ivar answers: every answer received, in order.
    """

    def __init__(self, client: BridgeTestClient, format: str = "json") -> None:
        if format not in ("json", "bgpy"):
            raise ValueError('format is "json" (JSON lines) or "bgpy" (pickles)')
        self._client = client
        self.format = format
        self.answers: List[Dict[str, Any]] = []
        self._read = 0
        self._lines = b""
        self.protocol = _Protocol(self)

    @property
    def closed(self) -> bool:
        """Whether the server closed the connection."""
        self._client.flush()
        return self.protocol.lost

    # sending -------------------------------------------------------------

    def send(self, type_: str, **args: Any) -> None:
        """Send one message (C{"EXEC"}, C{"INIT"}, ...) and flush."""
        if self.format == "json":
            data = json.dumps({"type": type_, "args": args}).encode() + b"\n"
        else:
            data = encode_bgpy(Message(MessageType[type_], args))
        self.send_raw(data)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (to test what the server refuses), and flush."""
        transport_of(self.protocol).write(data)
        self._client.flush()

    def call(self, type_: str, **args: Any) -> List[Dict[str, Any]]:
        """
        Send one message; return the answers it got.  On bgpy's format the
        clock moves through the server's pacing (at most L{PACING_WINDOW}
        seconds, in steps to each pending timer), as the answers are spread
        over time there.
        """
        before = len(self.answers)
        self.send(type_, **args)
        if self.format == "bgpy":
            self._client.settle(PACING_WINDOW)
        self._read = len(self.answers)
        return self.answers[before:]

    # receiving -----------------------------------------------------------

    def receive(self) -> Dict[str, Any]:
        """
        Flush; the next answer not read yet.

        @raise LookupError: none came.
        """
        self._client.flush()
        if self._read >= len(self.answers):
            raise LookupError("no bgpy answer is waiting")
        self._read += 1
        return self.answers[self._read - 1]

    def close(self) -> None:
        """Close the connection, and flush."""
        transport_of(self.protocol).loseConnection()
        self._client.flush()

    def _received(self, data: bytes) -> None:
        if self.format == "json":
            self._lines += data
            *lines, self._lines = self._lines.split(b"\n")
            for line in lines:
                self.answers.append(json.loads(line))
            return
        for body in self.protocol.frames.feed(data):
            if isinstance(body, BgpyError):
                raise AssertionError(f"malformed bgpy frame from the server: {body}")
            message = decode_frame(body, (), True)
            if not isinstance(message, Message):
                raise AssertionError(f"undecodable bgpy answer: {message}")
            self.answers.append({"type": message.type.name, "args": message.args})
            if isinstance(message.args, dict) and "await_response" in message.args:
                transport_of(self.protocol).write(encode_bgpy(ack(message.type)))
