"""
JSON-RPC 2.0's values: error codes, L{Error}, and the requests a body holds.

This is the bottom of the pure core, which does no I/O and imports no
Twisted; the rest of it builds on these values::

    twistbridge.jsonrpc._parse      a body's bytes to Parsed requests
    twistbridge.jsonrpc._dispatch   paths, methods, params binding, options
    twistbridge.jsonrpc._encode     responses back to bytes
    twistbridge.jsonrpc._httprules  CORS, JSONP, content types, gzip, cookies
    twistbridge.jsonrpc._state      call statistics and lock/unlock

Errors are values (L{Error}) with a code and a message, turned into JSON-RPC
error objects at the edge.  Besides JSON-RPC 2.0, top-level requests without
a C{"jsonrpc"} member but with a string C{"method"} are answered in the older
envelopes that txjsonrpc's C{Proxy} expects: JSON-RPC 1.0 when they carry an
C{"id"}, and txjsonrpc's pre-1.0 envelope (the bare result in a list) when
they do not (L{V1}, L{PRE1}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from twistbridge.errors import Busy, ServerMessage, error_parts, error_text

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
FORBIDDEN = -32001
#: The code of the "Server busy" error: the call was refused unrun.
SERVER_BUSY = -32003

#: Envelope versions: JSON-RPC 2.0, 1.0, and txjsonrpc's pre-1.0.
V2, V1, PRE1 = 2, 1, 0


@dataclass(frozen=True)
class Error:
    """
    A JSON-RPC error: a code, a message and optional data.

    @ivar code: the JSON-RPC error code.
    @ivar message: a short description (never a traceback).
    @ivar data: extra detail for the client, or L{None}.
    """

    code: int
    message: str
    data: Any = None

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-RPC 2.0 error object."""
        d: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            d["data"] = self.data
        return d


def parse_error(detail: Optional[str] = None) -> Error:
    """-32700: the body is not JSON."""
    return Error(PARSE_ERROR, "Parse error", detail)


def invalid_request(detail: Optional[str] = None) -> Error:
    """-32600: the JSON is not a valid request object."""
    return Error(INVALID_REQUEST, "Invalid Request", detail)


def method_not_found(name: str) -> Error:
    """-32601: no such method at this path."""
    return Error(METHOD_NOT_FOUND, "Method not found")


def invalid_params(detail: str) -> Error:
    """-32602: the params do not bind to the method's signature."""
    return Error(INVALID_PARAMS, "Invalid params", detail)


def internal_error(detail: Optional[str] = None) -> Error:
    """-32603: the server failed (for example a result that is not JSON)."""
    return Error(INTERNAL_ERROR, "Internal error", detail)


def forbidden() -> Error:
    """-32001: the C{auth} function refused the call."""
    return Error(FORBIDDEN, "Forbidden")


def method_error(exc: BaseException) -> Error:
    """
    -32000: the method raised C{exc}; the message is the exception's text,
    as JSON-RPC servers (flaskJSONRPCServer among them) have always sent
    it, and C{data} names its class: C{{"type": "KeyError"}} (so C{'name'}
    is not all a client learns of a C{KeyError}).  A message-less exception
    is named by its class in the message too.  -32003 C{"Server busy"} (the
    detail in C{data}) when the call was refused unrun because the server
    is overloaded: the client may retry later.
    """
    if isinstance(exc, Busy):
        return Error(SERVER_BUSY, "Server busy", str(exc))
    if isinstance(exc, ServerMessage):
        return Error(SERVER_ERROR, error_text(exc))
    kind, text = error_parts(exc)
    return Error(SERVER_ERROR, text or kind, {"type": kind})


class Call:
    """
    One valid request object.

    @ivar method: the method name.
    @ivar params: a list, a dict, or L{None} when absent.
    @ivar id: the request id (L{None} may be a real id; see C{notification}).
    @ivar notification: C{True} when the request had no id: no response.
    @ivar version: L{V2}, L{V1} or L{PRE1} (the envelope of the response).
    """

    __slots__ = ("method", "params", "id", "notification", "version")

    def __init__(
        self,
        method: str,
        params: Any,
        id: Any,
        notification: bool,
        version: int = V2,
    ) -> None:
        self.method = method
        self.params = params
        self.id = id
        self.notification = notification
        self.version = version

    def __repr__(self) -> str:
        return f"<Call {self.method} id={self.id!r}>"


class Invalid:
    """
    A batch entry (or single request) that is not a valid request object.

    @ivar error: the L{Error} to answer.
    @ivar id: the id to answer with (L{None} when it could not be read).
    """

    __slots__ = ("error", "id", "version")

    def __init__(self, error: Error, id: Any = None, version: int = V2) -> None:
        self.error = error
        self.id = id
        self.version = version


Item = Union[Call, Invalid]


class Parsed:
    """
    A parsed HTTP body: a single request or a batch.

    @ivar batch: whether the body was a JSON array.
    @ivar items: the L{Call} and L{Invalid} entries, in order.
    """

    __slots__ = ("batch", "items")

    def __init__(self, batch: bool, items: List[Item]) -> None:
        self.batch = batch
        self.items = items
