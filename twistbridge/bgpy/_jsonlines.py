"""
bgpy's second wire format, JSON lines: one JSON object per line,
C{{"type": "EXEC", "args": {...}}}, for clients in other languages.  Pure
Python, like L{twistbridge.bgpy._core}.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Union

from twistbridge._json import dumps_bytes, loads
from twistbridge.bgpy._core import BgpyError, Message, MessageType
from twistbridge.errors import not_json_text

# ---------------------------------------------------------------------------
# JSON lines


class LineDecoder:
    """
    Split a byte stream into lines (without their line ending).  A line
    longer than C{max_size} is a fatal L{BgpyError}.

    @ivar max_size: the longest line accepted (it may be changed between
        two calls of L{feed}).
    @ivar note: words added to the error about a line over C{max_size}.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.note = ""
        self._buffer = bytearray()
        self._scanned = 0
        self.failed = False

    @property
    def pending(self) -> bool:
        """Whether part of a line has been received."""
        return bool(self._buffer)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned by L{feed}."""
        return len(self._buffer)

    def _too_long(self) -> BgpyError:
        self.failed = True
        return BgpyError(
            f"Line exceeds the limit of {self.max_size} bytes{self.note}.", True
        )

    def feed(
        self, data: bytes, most: Optional[int] = None
    ) -> List[Union[bytes, BgpyError]]:
        """
        Add bytes; return the lines they completed, at most C{most} of them
        (the rest stays buffered: C{feed(b"")} returns it later).
        """
        if self.failed:
            return []
        if not self._buffer and data.endswith(b"\n") and data.count(b"\n") == 1:
            # The usual case: exactly one whole line.
            if len(data) - 1 > self.max_size:
                return [self._too_long()]
            line = data.rstrip(b"\r\n")
            return [line] if line.strip() else []
        self._buffer += data
        out: List[Union[bytes, BgpyError]] = []
        while True:
            if most is not None and len(out) >= most:
                return out
            index = self._buffer.find(b"\n", self._scanned)
            if index < 0:
                self._scanned = len(self._buffer)
                if self._scanned > self.max_size:
                    out.append(self._too_long())
                return out
            if index > self.max_size:
                out.append(self._too_long())
                return out
            line = bytes(self._buffer[:index]).rstrip(b"\r")
            del self._buffer[: index + 1]
            self._scanned = 0
            if line.strip():
                out.append(line)


_CLIENT_TYPES = {
    t.name: t
    for t in (MessageType.INIT, MessageType.EXEC, MessageType.EXIT, MessageType.AUTH)
}


def parse_json_line(line: bytes) -> Union[Message, BgpyError]:
    """
    Parse one JSON line into a L{Message}; an error (not JSON, not an
    object, unknown type, args not an object) keeps the connection usable.
    """
    try:
        data = loads(line, allow_nan=True)
    except (ValueError, RecursionError) as e:  # (UnicodeDecodeError is one)
        return BgpyError(f"Invalid JSON: {e}.")
    if type(data) is not dict:
        return BgpyError("A message must be a JSON object with 'type' and 'args'.")
    name = data.get("type")
    kind = _CLIENT_TYPES.get(name.upper()) if isinstance(name, str) else None
    if kind is None:
        return BgpyError(
            f"Unknown message type {name!r}: expected one of AUTH, INIT, EXEC, EXIT."
        )
    args = data.get("args")
    if args is None:
        args = {}
    elif type(args) is not dict:
        return BgpyError("'args' must be a JSON object.")
    return Message(kind, args)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(message: Message) -> bytes:
    """
    One JSON line for C{message}.  Arguments that JSON cannot carry give an
    C{ERROR} line saying so instead.
    """
    try:
        return (
            dumps_bytes(
                {"type": message.type.name, "args": message.args},
                allow_nan=True,
                default=_json_default,
            )
            + b"\n"
        )
    except (TypeError, ValueError):
        reason = not_json_text(message.args, "answer", (set, frozenset))
        text = json.dumps(
            {"type": "ERROR", "args": {"message": f"Answer is not JSON: {reason}."}}
        )
    return text.encode("utf-8") + b"\n"
