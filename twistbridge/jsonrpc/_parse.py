"""
Parsing and validating JSON-RPC bodies: bytes in, L{Parsed} requests out.

The JSON decoder is strict (UTF-8 only, no C{NaN} or C{Infinity}, input
nested too deeply is a parse error), and each decoded object becomes a
L{Call} or an L{Invalid} (L{validate}).  A large body is read one batch entry
at a time, so an oversized batch is refused before it is decoded as a whole
(L{parse_large}).  Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import json
import re
from typing import Any, List, Union

from twistbridge import _json
from twistbridge._json import TooManyContainers, loads_bounded
from twistbridge.jsonrpc._core import (
    PRE1,
    V1,
    V2,
    Call,
    Error,
    Invalid,
    Item,
    Parsed,
    invalid_request,
    parse_error,
)

_MISSING = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: Union[bytes, str]) -> Any:
    """
    Parse JSON strictly (no C{NaN} / C{Infinity}).

    @raise ValueError: for anything that is not JSON, including bytes that
        are not UTF-8 and input nested too deeply to parse.
    """
    try:
        # RFC 8259: JSON exchanged between systems is UTF-8 (bytes that are
        # not are refused).
        return _json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _valid_id(value: Any) -> bool:
    t = type(value)
    return t is str or t is int or t is float or value is None


def validate(obj: Any, top_level: bool = True) -> Item:
    """Turn one decoded request object into a L{Call} or an L{Invalid}."""
    if type(obj) is not dict:
        return Invalid(invalid_request())
    version = V2
    if obj.get("jsonrpc") != "2.0":
        if top_level and "jsonrpc" not in obj and type(obj.get("method")) is str:
            version = V1 if "id" in obj else PRE1
        else:
            rid = obj.get("id")
            return Invalid(
                invalid_request(),
                rid if _valid_id(rid) else None,
            )
    rid = obj.get("id", _MISSING)
    if rid is not _MISSING and not _valid_id(rid):
        return Invalid(invalid_request())
    method = obj.get("method")
    if type(method) is not str:
        return Invalid(
            invalid_request(),
            None if rid is _MISSING else rid,
            version,
        )
    params = obj.get("params")
    if params is not None and type(params) is not list and type(params) is not dict:
        return Invalid(
            invalid_request(),
            None if rid is _MISSING else rid,
            version,
        )
    if version == PRE1:
        return Call(method, params, None, False, PRE1)
    if version == V1:
        return Call(method, params, rid, rid is None, V1)
    if rid is _MISSING:
        return Call(method, params, None, True)
    return Call(method, params, rid, False)


#: Bodies of at least this many bytes are parsed by L{parse_large} (in the
#: thread pool); smaller ones by L{parse}, in the reactor, at once.
INLINE_PARSE = 64 * 1024

# (The scanner is missing from json's stubs.)
_scan = json.JSONDecoder(parse_constant=_reject_constant).scan_once  # type: ignore[attr-defined]
_WS = re.compile(r"[ \t\n\r]*")


def parse(body: Union[bytes, str], max_batch_size: int = 1000) -> Union[Parsed, Error]:
    """
    Parse an HTTP body into a L{Parsed} request, or one L{Error} that is the
    whole answer (parse error, empty batch, batch over C{max_batch_size}).
    Bodies of L{INLINE_PARSE} bytes or more go to L{parse_large}.
    """
    if len(body) >= INLINE_PARSE:
        return parse_large(body, max_batch_size)
    try:
        obj = loads(body)
    except ValueError:
        return parse_error()
    if type(obj) is list:
        if not obj:
            return invalid_request()
        if max_batch_size and len(obj) > max_batch_size:
            return invalid_request(
                f"batch of {len(obj)} requests is over the limit of {max_batch_size}"
            )
        return Parsed(True, [validate(o, False) for o in obj])
    return Parsed(False, [validate(obj)])


def parse_large(
    body: Union[bytes, str], max_batch_size: int = 1000
) -> Union[Parsed, Error]:
    """
    L{parse} for a large body: a batch is read one request at a time and
    refused as soon as it holds more than C{max_batch_size}, so an oversized
    batch is never decoded as a whole (C{[[],[],...]} of 16 MB would be
    millions of lists).
    """
    try:
        text = body if isinstance(body, str) else body.decode("utf-8")
    except UnicodeDecodeError:
        return parse_error()
    pos = _WS.match(text).end()  # type: ignore[union-attr]
    if not text.startswith("[", pos):
        try:
            obj = loads_bounded(text, parse_constant=_reject_constant)
        except TooManyContainers as e:
            return invalid_request(f"request holds {e}")
        except (ValueError, RecursionError):
            return parse_error()
        return Parsed(False, [validate(obj)])
    items: List[Item] = []
    try:
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        if text.startswith("]", pos):
            end = pos + 1
        else:
            while True:
                if max_batch_size and len(items) == max_batch_size:
                    return invalid_request(
                        f"batch of more than {max_batch_size} requests is over "
                        f"the limit of {max_batch_size}"
                    )
                obj, pos = _scan(text, pos)
                items.append(validate(obj, False))
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                if text.startswith(",", pos):
                    pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                elif text.startswith("]", pos):
                    end = pos + 1
                    break
                else:
                    return parse_error()
    except (StopIteration, ValueError, RecursionError):
        return parse_error()
    if _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]
        return parse_error()
    if not items:
        return invalid_request()
    return Parsed(True, items)
