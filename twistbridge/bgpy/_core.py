"""
bgpy's pure core, its messages: message types, the detection of the wire
format and the bgpy frames; JSON lines are in L{twistbridge.bgpy._jsonlines},
the per-message decisions and the task state machine in
L{twistbridge.bgpy._tasks}.  No I/O happens here; the Twisted adapter
(L{twistbridge.bgpy._connection}) feeds bytes in, and carries out what these
modules decide.

Wire formats, told apart by the first byte a client sends:

    - bgpy: a 16-byte ASCII header holding the length of the body, then the
      body: base64 of a pickled C{bgpy.core.message.Message}.  Bodies are
      decoded only by L{twistbridge.bgpy._pickle}; answers are pickled by
      L{pickle_message} so that bgpy's own client unpickles them into its own
      C{Message} class.
    - JSON lines: one JSON object per line, C{{"type": "EXEC", "args": {...}}}.

Errors are values: L{BgpyError} has a message (sent to the client as
C{ERROR {"message": ...}}) and says whether the connection must close.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import pickle
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

HEADER_SIZE = 16
"""Bytes of the length header of a bgpy frame."""

BUFFER_TIME = 0.1
"""Seconds bgpy's own server pauses after each frame it reads or writes."""

RECEIVE_PAUSE = 0.09
"""
Seconds between reading a bgpy frame and writing the next one.  bgpy's
client sleeps L{BUFFER_TIME} after each write before it reads: an answer
sent this long after the request is waiting when it reads, and the frame
after it (L{BUFFER_TIME} later again) cannot join it in one read.
"""

_HEADER = re.compile(rb"^ *(\d{1,16}) *$")

#: What a message carries and a task keeps: anything a client pickled or a
#: task returned (JSON lines bring JSON values only).
Data = Any


class MessageType(enum.Enum):
    """The message types of bgpy (same names and values as bgpy's own)."""

    INIT = 0
    EXEC = 1
    EXIT = 2
    AUTH = 3
    OK = 4
    ERROR = 5

    def __setstate__(self, state: object) -> None:
        # A pickle must never change an enum member (BUILD on a member).
        raise pickle.UnpicklingError("MessageType members cannot be modified")


class Message:
    """
    One message: a L{MessageType} and a dict of arguments.

    Pickles from bgpy's client land here (the restricted unpickler maps
    C{bgpy.core.message.Message} to this class).

    @ivar type: the L{MessageType}.
    @ivar args: the arguments.
    """

    __slots__ = ("type", "args")

    def __init__(
        self, type_: MessageType, args: Optional[Dict[str, Data]] = None
    ) -> None:
        self.type = type_
        self.args = {} if args is None else args

    def __setstate__(self, state: object) -> None:
        # What pickle's BUILD hands over for a slotted class:
        # (None or {}, {"type": ..., "args": ...}).
        if not (isinstance(state, tuple) and len(state) == 2):
            raise pickle.UnpicklingError("malformed Message state")
        slots = state[1] or {}
        if state[0] or not isinstance(slots, dict) or set(slots) - {"type", "args"}:
            raise pickle.UnpicklingError("malformed Message state")
        # Unpickled values: the unpickler checks them once the message is
        # built (twistbridge.bgpy._pickle).
        self.type = slots.get("type")  # type: ignore[assignment]
        self.args = slots.get("args", {})

    def get_args(self) -> Dict[str, Data]:
        """The arguments (bgpy's accessor)."""
        return self.args

    def set_args(self, args: Dict[str, Data]) -> None:
        """Replace the arguments (bgpy's accessor)."""
        self.args = args

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.type is other.type and self.args == other.args

    def __repr__(self) -> str:
        return f"Message({self.type}, {self.args!r})"


@dataclass(frozen=True)
class BgpyError:
    """
    An error answered to a client.

    @ivar message: the text of C{ERROR {"message": ...}}.
    @ivar close: whether the connection closes after the answer.
    """

    message: str
    close: bool = False

    def to_message(self) -> Message:
        """The C{ERROR} message carrying this error."""
        return error_message(self.message)


def ok_message(text: str) -> Message:
    """C{OK {"message": text}}."""
    return Message(MessageType.OK, {"message": text})


def error_message(text: str) -> Message:
    """C{ERROR {"message": text}}."""
    return Message(MessageType.ERROR, {"message": text})


def ack(received: MessageType) -> Message:
    """The acknowledgement of a received message: C{OK Received '<TYPE>'}."""
    return ok_message(f"Received '{received.name}'")


# ---------------------------------------------------------------------------
# Format detection


def detect_format(first_byte: bytes) -> str:
    """
    C{"bgpy"} when a connection starts with an ASCII digit (bgpy's length
    header), C{"json"} for anything else (JSON lines; garbage then gets
    JSON-lines errors).
    """
    return "bgpy" if first_byte[:1].isdigit() else "json"


# ---------------------------------------------------------------------------
# bgpy framing


class FrameDecoder:
    """
    Split a byte stream into bgpy frame bodies.

    L{feed} returns the complete bodies, or a fatal L{BgpyError} as the last
    item when a header is not a number or announces more than
    C{max_size} bytes (refused before any buffer for the body is allocated).

    @ivar max_size: the largest body accepted (it may be changed between
        two calls of L{feed}).
    @ivar note: words added to the error about a body over C{max_size}.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.note = ""
        self._buffer = bytearray()
        self._need: Optional[int] = None
        self.failed = False

    @property
    def pending(self) -> bool:
        """Whether part of a frame has been received."""
        return bool(self._buffer) or self._need is not None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned by L{feed}."""
        return len(self._buffer)

    def feed(
        self, data: bytes, most: Optional[int] = None
    ) -> List[Union[bytes, BgpyError]]:
        """
        Add bytes; return the frame bodies they completed, at most C{most}
        of them (the rest stays buffered: C{feed(b"")} returns it later).
        """
        if self.failed:
            return []
        self._buffer += data
        out: List[Union[bytes, BgpyError]] = []
        while True:
            if most is not None and len(out) >= most:
                return out
            if self._need is None:
                if len(self._buffer) < HEADER_SIZE:
                    return out
                header = bytes(self._buffer[:HEADER_SIZE])
                match = _HEADER.match(header)
                if match is None:
                    self.failed = True
                    out.append(
                        BgpyError(f"Invalid header {header!r}: not a length.", True)
                    )
                    return out
                size = int(match.group(1))
                if size == 0:
                    self.failed = True
                    out.append(BgpyError("Invalid header: empty message.", True))
                    return out
                if size > self.max_size:
                    self.failed = True
                    out.append(
                        BgpyError(
                            f"Message of {size} bytes exceeds the limit of "
                            f"{self.max_size} bytes{self.note}.",
                            True,
                        )
                    )
                    return out
                del self._buffer[:HEADER_SIZE]
                self._need = size
            if len(self._buffer) < self._need:
                return out
            with memoryview(self._buffer) as view:  # one copy, not two
                out.append(bytes(view[: self._need]))
            del self._buffer[: self._need]
            self._need = None


def frame(body: bytes) -> bytes:
    """Prefix C{body} with bgpy's 16-byte length header."""
    return f"{len(body):<{HEADER_SIZE}}".encode("ascii") + body


BGPY_MODULE = "bgpy.core.message"


class _AnswerPickler(pickle._Pickler):
    """
    The standard (pure Python) pickler, except that L{Message} and
    L{MessageType} are written as the globals of bgpy's module.
    """

    if TYPE_CHECKING:
        # The pure-Python pickler's own methods, left out of its stubs.
        def save(self, obj: object) -> None: ...
        def write(self, data: bytes) -> None: ...
        def memoize(self, obj: object) -> None: ...

    def save_global(self, obj: type, name: Optional[str] = None) -> None:
        if obj is Message or obj is MessageType:
            self.save(BGPY_MODULE)
            self.save(obj.__name__)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)  # type: ignore[misc]  # (not in the stubs)


def pickle_message(message: Message) -> bytes:
    """
    Pickle C{message} as a C{bgpy.core.message.Message} (protocol 4, as
    bgpy's client writes), so that bgpy's client unpickles it into its own
    class; bgpy need not be installed here.

    @raise pickle.PicklingError: when the arguments do not pickle.
    """
    out = io.BytesIO()
    try:
        _AnswerPickler(out, protocol=4).dump(message)
    except Exception as e:
        raise pickle.PicklingError(f"answer does not pickle: {e}") from e
    return out.getvalue()


def encode_bgpy(message: Message) -> bytes:
    """A complete bgpy frame for C{message}: header + base64(pickle)."""
    # base64.encodebytes is what bgpy's codecs.encode(..., "base64") writes.
    return frame(base64.encodebytes(pickle_message(message)))


def unbase64(body: bytes) -> Union[bytes, BgpyError]:
    """Decode a frame body's base64 (leniently, as bgpy does)."""
    try:
        return binascii.a2b_base64(body)
    except (binascii.Error, ValueError) as e:
        return BgpyError(f"Invalid message: not base64 ({e}).", True)


def respond(client: Any, response: Any, error: bool = False) -> None:
    """
    Send the second response to a client that asked for one
    (C{await_response=True}): C{OK response}, or C{ERROR response} with
    C{error=True}.  Tasks call it with the C{client} they were given; only
    the first call of a task run is sent, and nothing is sent to a client
    that did not ask.
    """
    if client is None or not hasattr(client, "respond"):
        raise TypeError("respond() needs the client object a task was given")
    client.respond(response, error=error)
