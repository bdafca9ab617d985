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

L{dumps_bytes} and L{loads} are the codec of the four protocols: orjson
when it is installed (the C{fast} extra), the standard library otherwise,
with the standard library's meaning either way.  orjson is tried first and
the standard library decides whatever orjson would do differently: values
it refuses (integers past 64 bits, non-string keys, subclasses of C{str},
C{int}, C{dict} and C{list}, dataclasses, dates, nesting past its limits),
output holding C{null} (orjson writes C{NaN} as C{null}), non-ASCII output
when ASCII is asked for, input it refuses (C{NaN}, lone surrogates,
C{1e400}, nesting past 1024) and input holding a run of 19 digits (orjson
reads integers past 64 bits as floats).  What stays different: floats'
exponents are written C{1e-7}, not C{1e-07}, U+007F is not escaped, and
C{enum.Enum} members and C{uuid.UUID} values, which the standard library
refuses, encode as their value and canonical text.
"""

from __future__ import annotations

import json
from json import JSONDecoder

# json's stubs leave out its pure-Python scanner and the hooks it calls.
from json.decoder import JSONArray, JSONObject  # type: ignore[attr-defined]
from json.scanner import py_make_scanner  # type: ignore[attr-defined]
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised with FAST forced off
    _orjson = None  # type: ignore[assignment]

#: Whether orjson is used (it is installed); tests turn it off to check that
#: the standard library answers the same.
FAST = _orjson is not None

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
        if FAST and not options.keys() - {"parse_constant"}:
            # orjson refuses the constants, so parse_constant decides them
            # in the standard library's second pass.
            try:
                if not _long_digits(raw):
                    return _oloads(raw)  # type: ignore[no-any-return]
            except _ODecodeError:
                pass
        value = JSONDecoder(**options).decode(text)
    else:
        value = _counting_decoder(max_containers, **options).decode(text)
    return value


# -- the codec of the protocols ---------------------------------------------

if _orjson is not None:
    _odumps = _orjson.dumps
    _oloads = _orjson.loads
    _ODecodeError = _orjson.JSONDecodeError
    # Subclasses, dataclasses and dates go to the standard library (below).
    _OPTIONS = (
        _orjson.OPT_PASSTHROUGH_SUBCLASS
        | _orjson.OPT_PASSTHROUGH_DATACLASS
        | _orjson.OPT_PASSTHROUGH_DATETIME
    )

#: Every digit as C{0}, anything else as a space: a run of 19 digits (an
#: integer that may be past 64 bits, which orjson reads as a float) is then
#: found by a plain substring search, far faster than a regular expression.
#: A false alarm (digits in a string) only costs a parse by the standard
#: library.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 19


def _long_digits(payload: Union[bytes, str]) -> bool:
    """Whether C{payload} holds a run of 19 or more digits."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    return _LONG_RUN in payload.translate(_DIGITS_ONLY)


_ENCODERS: Dict[Tuple[bool, bool], Callable[[Any], str]] = {
    (ascii, nan): json.JSONEncoder(
        ensure_ascii=ascii, allow_nan=nan, separators=(",", ":")
    ).encode
    for ascii in (True, False)
    for nan in (True, False)
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODE_STRICT = JSONDecoder(parse_constant=_reject_constant).decode
_DECODE = JSONDecoder().decode


def dumps_bytes(
    obj: Any,
    ascii: bool = True,
    allow_nan: bool = False,
    default: Optional[Callable[[Any], Any]] = None,
) -> bytes:
    """
    Compact UTF-8 JSON for C{obj}: what
    C{json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii,
    allow_nan=allow_nan, default=default).encode()} means (see the
    module's docstring).

    @raise ValueError: for C{NaN} or C{Infinity} unless C{allow_nan}, and
        for a circular reference.
    @raise TypeError: for an object JSON cannot hold.
    @raise RecursionError: for nesting too deep.
    """
    if FAST:
        try:
            out: bytes = _odumps(obj, option=_OPTIONS)
        except TypeError:
            pass
        else:
            if b"null" not in out and (not ascii or out.isascii()):
                return out
    if default is not None:
        encoder = json.JSONEncoder(
            ensure_ascii=ascii,
            allow_nan=allow_nan,
            separators=(",", ":"),
            default=default,
        )
        return encoder.encode(obj).encode("utf-8")
    return _ENCODERS[ascii, allow_nan](obj).encode("utf-8")


def loads(
    payload: Union[bytes, str],
    allow_nan: bool = False,
    fallback: Optional[Callable[[Union[bytes, str]], Any]] = None,
) -> JSONValue:
    """
    Decode one JSON document (UTF-8 bytes, or text) as
    L{json.loads} does; C{NaN} and C{Infinity} are refused unless
    C{allow_nan}.  C{fallback}, when given, is the standard-library decoder
    that decides instead (C{json.loads} itself, to keep its UTF-16 and
    UTF-32 sniffing).

    @raise ValueError: for anything that is not JSON (bytes that are not
        UTF-8 included).
    @raise RecursionError: for nesting too deep.
    """
    if FAST:
        if not _long_digits(payload):
            try:
                value: JSONValue = _oloads(payload)
                return value
            except _ODecodeError:
                pass
    if fallback is not None:
        result: JSONValue = fallback(payload)
        return result
    text = payload if isinstance(payload, str) else payload.decode("utf-8")
    decoded: JSONValue = (_DECODE if allow_nan else _DECODE_STRICT)(text)
    return decoded
