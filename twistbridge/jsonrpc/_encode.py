"""
Encoding JSON-RPC responses: results and errors to bytes, in the envelope
their request came in (JSON-RPC 2.0, 1.0 or txjsonrpc's pre-1.0), and a
batch's responses joined into one body.  The JSON is strict (compact, ASCII,
no C{NaN}).  Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional

from twistbridge._json import dumps_bytes
from twistbridge.jsonrpc._core import PRE1, V1, V2, Call, Error, internal_error

_encode_str = json.encoder.encode_basestring_ascii


def dumps(obj: Any, default: Optional[Callable[[Any], Any]] = None) -> str:
    """
    Encode strict JSON (compact, ASCII, no NaN).

    @param default: called with each object JSON cannot hold, for what to
        write instead (as C{json.dumps}'s C{default}), or L{None}.
    @raise ValueError: for something that is not JSON (including NaN).
    @raise TypeError: for an object JSON cannot hold (and C{default} did not
        convert).
    """
    return dumps_strict(obj, default).decode("ascii")


def dumps_strict(obj: Any, default: Optional[Callable[[Any], Any]] = None) -> bytes:
    """L{dumps}, as bytes.

    @raise ValueError: for something that is not JSON (including NaN).
    @raise TypeError: for an object JSON cannot hold.
    """
    try:
        return dumps_bytes(obj)
    except RecursionError:
        raise ValueError("result nested too deeply") from None
    except TypeError:
        if default is None:
            raise
    try:
        return json.dumps(
            obj, default=default, separators=(",", ":"), allow_nan=False
        ).encode("ascii")
    except RecursionError:
        raise ValueError("result nested too deeply") from None


def _fast(value: Any, default: Optional[Callable[[Any], Any]] = None) -> bytes:
    """JSON for a value, with the common scalars done without the encoder."""
    t = type(value)
    if t is str:
        return _encode_str(value).encode("ascii")
    if t is int:
        return int.__repr__(value).encode("ascii")
    if value is None:
        return b"null"
    return dumps_strict(value, default)


def encode_result(
    call: Call, result: Any, default: Optional[Callable[[Any], Any]] = None
) -> bytes:
    """
    The response to C{call} whose method returned C{result}.

    @param default: what to write for an object JSON cannot hold (see
        L{dumps}), or L{None}.
    @raise ValueError: (or L{TypeError}) when C{result} is not JSON.
    """
    encoded = _fast(result, default)
    if call.version == V2:
        return b"".join(
            (
                b'{"jsonrpc":"2.0","result":',
                encoded,
                b',"id":',
                _fast(call.id),
                b"}",
            )
        )
    if call.version == V1:
        return b"".join(
            (b'{"result":', encoded, b',"error":null,"id":', _fast(call.id), b"}")
        )
    return b"[" + encoded + b"]"


def encode_error(error: Error, id: Any = None, version: int = V2) -> bytes:
    """The error response with C{id}, in the envelope of C{version}."""
    if version == V2:
        body: Any = {"jsonrpc": "2.0", "error": error.to_dict(), "id": id}
    else:
        fault = {
            "fault": "Fault",
            "faultCode": error.code,
            "faultString": error.message,
        }
        body = fault if version == PRE1 else {"result": None, "error": fault, "id": id}
    try:
        return dumps_strict(body)
    except (TypeError, ValueError):
        body = {"jsonrpc": "2.0", "error": internal_error().to_dict(), "id": None}
        return dumps_strict(body)


def join(parts: Iterable[Optional[bytes]], batch: bool) -> Optional[bytes]:
    """
    The HTTP body for these responses (L{None} entries are notifications);
    L{None} when nothing is to be answered (HTTP 204).
    """
    present = [p for p in parts if p is not None]
    if not present:
        return None
    if batch:
        return b"[" + b",".join(present) + b"]"
    return present[0]
