"""
Parsing of large Igor messages, in a pool thread.

json's C parser holds the GIL from start to end: run in a thread, a 16 MB
message of C{[[],[],...]} would still stop the reactor thread for seconds.
So a large message is parsed by json's C parser only when a cheap count of
its commas and brackets says that takes a few milliseconds; anything denser
goes through json's pure-Python scanner, which lets the reactor thread run
every few milliseconds, and which counts the arrays and objects it builds:
a message holding more than L{MAX_CONTAINERS} is refused as soon as it
passes that number (past it, the garbage collector's own passes over the
message start to stall every thread).
"""

from __future__ import annotations

from json import JSONDecoder
from json.decoder import JSONArray, JSONObject
from json.scanner import py_make_scanner
from typing import Any, Union

from twistbridge.igor._core import NOT_JSON, ProtocolError, Request, request_from

#: Messages up to this many bytes are parsed in the reactor thread; larger
#: ones are parsed by L{parse_large} in a pool thread.
INLINE_LIMIT = 64 * 1024

#: The arrays and objects one message may hold.
MAX_CONTAINERS = 250_000

#: Commas plus five per bracket up to which json's C parser is used (a few
#: milliseconds of holding the GIL).
C_PARSER_BUDGET = 300_000

class _TooMany(Exception):
    pass


def _counting_decoder(limit: int) -> JSONDecoder:
    """A pure-Python decoder that gives up after C{limit} arrays and objects."""
    decoder = JSONDecoder()
    left = [limit]

    def parse_array(*args: Any) -> Any:
        left[0] -= 1
        if left[0] < 0:
            raise _TooMany()
        return JSONArray(*args)

    def parse_object(*args: Any) -> Any:
        left[0] -= 1
        if left[0] < 0:
            raise _TooMany()
        return JSONObject(*args)

    decoder.parse_array = parse_array  # type: ignore[assignment]
    decoder.parse_object = parse_object  # type: ignore[assignment]
    decoder.scan_once = py_make_scanner(decoder)  # type: ignore[assignment]
    return decoder


def cost(payload: bytes) -> int:
    """The estimated work of parsing C{payload}: commas plus five per bracket."""
    return payload.count(b",") + 5 * (payload.count(b"[") + payload.count(b"{"))


def parse_large(
    payload: bytes, max_containers: int = MAX_CONTAINERS
) -> Union[Request, ProtocolError]:
    """
    Validate one large message (any thread; never raises).

    @return: a L{Request}, or a L{ProtocolError} saying what is wrong.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return NOT_JSON
    try:
        if cost(payload) <= C_PARSER_BUDGET:
            message = JSONDecoder().decode(text)
        else:
            message = _counting_decoder(max_containers).decode(text)
    except _TooMany:
        return ProtocolError(
            400, f"Message holds more than {max_containers} arrays and objects"
        )
    except (ValueError, TypeError, RecursionError):
        return NOT_JSON
    return request_from(message)
