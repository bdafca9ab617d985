"""
JSON decoding whose cost to the other clients is bounded, for large bodies
and messages parsed in a pool thread.

json's C parser holds the GIL from start to end: even in a thread, a 16 MB
document of C{[[],[],...]} stops the reactor thread for seconds.  So a
large document goes to json's C parser only when a cheap count of its
commas and brackets says that takes a few milliseconds; anything denser
goes through json's pure-Python scanner, which lets the reactor thread run
every few milliseconds, and which counts the arrays and objects it builds:
a document holding more than C{max_containers} is refused as soon as it
passes that number (past it, the garbage collector's own passes over the
objects start to stall every thread).
"""

from __future__ import annotations

from json import JSONDecoder

# json's stubs leave out its pure-Python scanner and the hooks it calls.
from json.decoder import JSONArray, JSONObject  # type: ignore[attr-defined]
from json.scanner import py_make_scanner  # type: ignore[attr-defined]
from typing import Any, Dict, List, Tuple, Union

#: A decoded JSON document: what L{json.loads} returns.
JSONValue = Union[
    None, bool, int, float, str, List["JSONValue"], Dict[str, "JSONValue"]
]

#: The arrays and objects one document may hold.
MAX_CONTAINERS = 250_000

#: Commas plus five per bracket up to which json's C parser is used (a few
#: milliseconds of holding the GIL).
C_PARSER_BUDGET = 300_000


class TooManyContainers(ValueError):
    """A document holds more arrays and objects than allowed."""


def _counting_decoder(limit: int, **options: Any) -> JSONDecoder:
    """A pure-Python decoder that gives up after C{limit} arrays and objects."""
    decoder = JSONDecoder(**options)
    left = [limit]

    # The scanner's hooks take its internal state and return (value, end).
    def parse_array(*args: Any) -> Tuple[JSONValue, int]:
        left[0] -= 1
        if left[0] < 0:
            raise TooManyContainers(f"more than {limit} arrays and objects")
        result: Tuple[JSONValue, int] = JSONArray(*args)
        return result

    def parse_object(*args: Any) -> Tuple[JSONValue, int]:
        left[0] -= 1
        if left[0] < 0:
            raise TooManyContainers(f"more than {limit} arrays and objects")
        result: Tuple[JSONValue, int] = JSONObject(*args)
        return result

    # Attributes the pure-Python scanner reads, unknown to json's stubs.
    decoder.parse_array = parse_array  # type: ignore[attr-defined]
    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder


def cost(payload: bytes) -> int:
    """The estimated work of parsing C{payload}: commas plus five per bracket."""
    return payload.count(b",") + 5 * (payload.count(b"[") + payload.count(b"{"))


def loads_bounded(
    payload: Union[bytes, str], max_containers: int = MAX_CONTAINERS, **options: Any
) -> JSONValue:
    """
    Decode C{payload} (UTF-8 JSON bytes, or text) as L{json.loads} would,
    letting other threads run while a dense document is parsed.  C{options}
    go to L{JSONDecoder} (C{parse_constant=...}).

    @raise TooManyContainers: past C{max_containers} arrays and objects.
    @raise ValueError: for anything that is not JSON (C{UnicodeDecodeError}
        included); C{RecursionError} for nesting too deep.
    """
    text = payload if isinstance(payload, str) else payload.decode("utf-8")
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    value: JSONValue
    if cost(raw) <= C_PARSER_BUDGET:
        value = JSONDecoder(**options).decode(text)
    else:
        value = _counting_decoder(max_containers, **options).decode(text)
    return value
