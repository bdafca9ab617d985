"""
JSON-RPC 2.0's pure core: parse, validate, bind params, encode responses.

Nothing here does I/O or knows about Twisted's HTTP machinery: a request body
goes in as bytes, L{Call} values and L{Error} values come out, and responses
go back out as bytes.  The adapter in L{twistbridge.jsonrpc._resource} runs
the calls and writes the bytes.

Errors are values (L{Error}) with a code and a message, turned into JSON-RPC
error objects at the edge.  Invalid params (-32602) are decided by binding
the params to the method's signature (L{Binder}) before the method is called,
never by catching a C{TypeError} raised inside it.

Besides JSON-RPC 2.0, top-level requests without a C{"jsonrpc"} member but
with a string C{"method"} are answered in the older envelopes that
txjsonrpc's C{Proxy} expects: JSON-RPC 1.0 when they carry an C{"id"}, and
txjsonrpc's pre-1.0 envelope (the bare result in a list) when they do not.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from twistbridge._json import TooManyContainers, loads_bounded
from twistbridge.errors import Busy, ServerMessage, error_parts, error_text
from twistbridge.jsonrpc._openrpc import DISCOVER, describe

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

_MISSING = object()


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: Union[bytes, str]) -> Any:
    """
    Parse JSON strictly (no C{NaN} / C{Infinity}).

    @raise ValueError: for anything that is not JSON, including bytes that
        are not UTF-8 and input nested too deeply to parse.
    """
    try:
        if not isinstance(body, str):
            # RFC 8259: JSON exchanged between systems is UTF-8.
            body = body.decode("utf-8")
        return _decode(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


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

_scan = json.JSONDecoder(parse_constant=_reject_constant).scan_once
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


# Binding params to a signature ---------------------------------------------


class Binder:
    """
    Decide before a call whether params bind to a function's signature.

    Simple signatures (plain positional-or-keyword parameters) are checked
    with a precomputed fast path equivalent to L{inspect.Signature.bind};
    anything else (C{*args}, C{**kwargs}, keyword-only, positional-only) uses
    L{inspect.Signature.bind} itself.  A callable without a signature accepts
    anything.

    @ivar magic: the name of the magic parameter the function accepts, or
        L{None}; it is not bindable by clients.
    """

    __slots__ = ("signature", "magic", "simple", "names", "required", "nparams")

    def __init__(self, func: Callable[..., Any], magic: Optional[str] = None) -> None:
        try:
            sig: Optional[inspect.Signature] = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None
        self.magic = None
        if sig is not None and magic and magic in sig.parameters:
            self.magic = magic
            sig = sig.replace(
                parameters=[p for p in sig.parameters.values() if p.name != magic]
            )
        self.signature = sig
        params = list(sig.parameters.values()) if sig is not None else []
        self.simple = sig is not None and all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params
        )
        self.names = frozenset(p.name for p in params)
        self.required = tuple(p.name for p in params if p.default is p.empty)
        self.nparams = len(params)

    def check(self, params: Any) -> Optional[str]:
        """L{None} when C{params} bind, else why not (for -32602's data)."""
        if self.signature is None:
            return None
        if self.simple:
            if params is None:
                if self.required:
                    return f"missing a required argument: {self.required[0]!r}"
                return None
            if type(params) is list:
                n = len(params)
                if n > self.nparams:
                    return f"too many positional arguments ({n} > {self.nparams})"
                if n < len(self.required):
                    return f"missing a required argument: {self.required[n]!r}"
                return None
            for key in params:
                if key not in self.names:
                    return f"got an unexpected keyword argument {key!r}"
            for name in self.required:
                if name not in params:
                    return f"missing a required argument: {name!r}"
            return None
        try:
            if params is None:
                self.signature.bind()
            elif type(params) is list:
                self.signature.bind(*params)
            else:
                self.signature.bind(**params)
        except TypeError as e:
            return str(e)
        return None


# Methods and dispatchers ----------------------------------------------------


class Method:
    """
    A method as the dispatcher sees it.

    @ivar name: the name clients call.
    @ivar handler: the L{twistbridge.offload.Handler} that runs it.
    @ivar binder: its L{Binder}.
    @ivar magic: the magic parameter's name if the function accepts it.
    @ivar jsonp: per-method JSONP switch (L{None}: the path's option).
    @ivar key: the object locks refer to (the function behind a bound method).
    """

    __slots__ = ("name", "handler", "binder", "magic", "jsonp", "key")

    def __init__(
        self,
        name: str,
        handler: Any,
        magic: Optional[str],
        jsonp: Optional[bool] = None,
    ) -> None:
        self.name = name
        self.handler = handler
        self.binder = Binder(handler.func, magic)
        self.magic = self.binder.magic
        self.jsonp = jsonp
        self.key = lock_key(handler.func)


def lock_key(func: Any) -> Any:
    """The object that names a function for L{Locks} (bound methods: C{__func__})."""
    return getattr(func, "__func__", func)


@dataclass(frozen=True)
class PathOptions:
    """
    The options of one JSON-RPC path (C{Bridge.rpc_path(path, **options)}).

    @ivar cors: C{False}, C{True}, or a dict with C{origin} (a string, or a
        list of allowed origins) and C{methods}.
    @ivar jsonp: answer C{GET <path>/<method>?...&jsonp=cb} (JSONP fallback).
    @ivar auth: C{auth(connection, method_name) -> bool}, called before each
        call, or L{None}.
    @ivar blocking: run calls of this path one at a time.
    @ivar compress_min_size: gzip responses of at least this many bytes when
        the client accepts gzip; L{None}: only when a method asks for it.
    @ivar magic_var: the name of the magic keyword parameter.
    @ivar max_batch_size: the most requests one batch may hold (0: no cap).
    @ivar allow_form_content: also accept bodies sent as
        C{application/x-www-form-urlencoded} (browser code written for
        flaskJSONRPCServer often does that).
    """

    cors: Any = False
    jsonp: bool = False
    auth: Optional[Callable[..., Any]] = None
    blocking: bool = False
    compress_min_size: Optional[int] = None
    magic_var: str = "_connection"
    max_batch_size: int = 1000
    allow_form_content: bool = False

    @classmethod
    def from_dict(cls, options: Dict[str, Any]) -> PathOptions:
        """
        Build from keyword options.

        @raise ValueError: for an unknown option name or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown JSON-RPC path option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        opts = cls(**options)
        if opts.cors not in (True, False) and not isinstance(opts.cors, dict):
            raise ValueError("cors must be True, False or a dict (origin, methods)")
        if opts.auth is not None and not callable(opts.auth):
            raise ValueError("auth must be callable: auth(connection, method_name)")
        if opts.compress_min_size is not None and int(opts.compress_min_size) < 0:
            raise ValueError("compress_min_size must be 0 or more")
        return opts


@dataclass
class Dispatcher:
    """
    The methods and options of one path.

    @ivar path: the normalized path (C{"/rpc"}).
    @ivar methods: method name -> L{Method}.
    @ivar options: the path's L{PathOptions}.
    """

    path: str
    methods: Dict[str, Method] = field(default_factory=dict)
    options: PathOptions = field(default_factory=PathOptions)

    def list_methods(self) -> List[str]:
        """The method names of this path, sorted (C{system.listMethods})."""
        return sorted(set(self.methods) | {LIST_METHODS, DISCOVER})

    def openrpc(self, version: str) -> Dict[str, Any]:
        """The OpenRPC document of this path (C{rpc.discover})."""
        return describe(
            self.path,
            [(m.name, m.handler.func, m.magic) for m in self.methods.values()],
            version,
        )


LIST_METHODS = "system.listMethods"

#: The built-in methods every path answers.
BUILTIN_METHODS = (LIST_METHODS, DISCOVER)


# The magic variable ------------------------------------------------------


class Connection(dict):
    """
    What the magic keyword (C{_connection}) gives a method: the client's
    C{ip}, C{headers}, C{cookies}, the C{cookiesOut} list and C{headersOut}
    dict to fill, C{allowCompress} to set, and the C{server}.  Readable as
    attributes or as keys, like flaskJSONRPCServer's.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, name: str, value: Any) -> None:
        dict.__setitem__(self, name, value)
        parent = dict.get(self, "_parent")
        if name == "allowCompress":
            # A method's own choice (True forces gzip, False forbids it).
            dict.__setitem__(self, "_compressChoice", bool(value))
            if parent is not None:
                parent[name] = value
        elif parent is not None and name == "headersOut":
            parent["headersOut"].update(value)
        elif parent is not None and name == "cookiesOut":
            parent["cookiesOut"].extend(value)

    def for_call(self) -> Connection:
        """
        A copy for one call of a batch, so that its C{method}, C{notify}
        (and what is computed from them) are its own; C{headersOut},
        C{cookiesOut} and C{allowCompress} still go to the one answer.
        """
        conn = Connection(self)
        dict.__setitem__(conn, "_parent", self)
        return conn

    def __missing__(self, name: str) -> Any:
        # The compatibility server adds flaskJSONRPCServer's computed
        # entries (call, dispatcher, request...) through this hook.
        extra = getattr(dict.get(self, "server"), "connection_extra", None)
        if extra is None:
            raise KeyError(name)
        return extra(self, name)

    def snapshot(self) -> Dict[str, Any]:
        """
        The picklable part (for C{run_in="process"} methods), readable as
        attributes there too.
        """
        from twistbridge._poolworker import Snapshot

        return Snapshot(
            (k, v)
            for k, v in self.items()
            if k not in ("server", "call", "_call", "_parent", "_compressChoice")
        )


def new_connection(
    ip: str,
    headers: Dict[str, str],
    cookies: Dict[str, str],
    path: str,
    server: Any,
    allow_compress: bool,
    jsonp: Any = False,
) -> Connection:
    """A fresh L{Connection} for one HTTP request."""
    return Connection(
        ip=ip,
        headers=headers,
        cookies=cookies,
        cookiesOut=[],
        headersOut={},
        allowCompress=allow_compress,
        server=server,
        path=path,
        jsonp=jsonp,
        method=None,
        notify=False,
    )


# Encoding ----------------------------------------------------------------

_encode = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":")
).encode


_encode_str = json.encoder.encode_basestring_ascii


def dumps(obj: Any) -> str:
    """
    Encode strict JSON (compact, ASCII, no NaN).

    @raise ValueError: for something that is not JSON (including NaN).
    @raise TypeError: for an object JSON cannot hold.
    """
    try:
        return _encode(obj)
    except RecursionError:
        raise ValueError("result nested too deeply") from None


def _fast(value: Any) -> str:
    """JSON for a value, with the common scalars done without the encoder."""
    t = type(value)
    if t is str:
        return _encode_str(value)
    if t is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return dumps(value)


def encode_result(call: Call, result: Any) -> bytes:
    """
    The response to C{call} whose method returned C{result}.

    @raise ValueError: (or L{TypeError}) when C{result} is not JSON.
    """
    if call.version == V2:
        return (
            '{"jsonrpc":"2.0","result":'
            + _fast(result)
            + ',"id":'
            + _fast(call.id)
            + "}"
        ).encode()
    if call.version == V1:
        return (
            '{"result":' + _fast(result) + ',"error":null,"id":' + _fast(call.id) + "}"
        ).encode()
    return ("[" + _fast(result) + "]").encode()


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
        return dumps(body).encode()
    except (TypeError, ValueError):
        body = {"jsonrpc": "2.0", "error": internal_error().to_dict(), "id": None}
        return dumps(body).encode()


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


# JSONP -----------------------------------------------------------------

_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*|\[\d+\])*$")


def valid_callback(name: str) -> bool:
    """Whether C{name} is a safe JavaScript callback name for JSONP."""
    return len(name) <= 128 and _CALLBACK.match(name) is not None


def jsonp_params(
    args: Dict[bytes, List[bytes]],
) -> Tuple[Optional[str], Dict[str, Any]]:
    """
    The callback name and named params of a JSONP query string: a parameter
    given once is a string, given several times a list of strings.

    @raise ValueError: for bytes that are not UTF-8.
    """
    callback = None
    params: Dict[str, Any] = {}
    for raw_key, raw_values in args.items():
        key = raw_key.decode("utf-8")
        values = [v.decode("utf-8") for v in raw_values]
        if key == "jsonp":
            callback = values[-1]
            continue
        params[key] = values[0] if len(values) == 1 else values
    return callback, params


def jsonp_body(callback: Optional[str], payload: bytes) -> bytes:
    """C{callback(payload);} (flaskJSONRPCServer's JSONP form)."""
    if callback is None:
        return payload
    return callback.encode() + b"(" + payload + b");"


# CORS -----------------------------------------------------------------

CORS_ALLOW_HEADERS = "Origin, Authorization, X-Requested-With, Content-Type, Accept"


def cors_headers(cors: Any, origin: Optional[str]) -> List[Tuple[str, str]]:
    """
    The C{Access-Control-*} headers for option C{cors} and the request's
    C{Origin} (flaskJSONRPCServer's headers; a list of origins echoes the
    request's origin when it is listed).
    """
    if not cors:
        return []
    allow_origin = "*"
    methods = "GET, POST, OPTIONS"
    if isinstance(cors, dict):
        allowed = cors.get("origin", "*")
        methods = cors.get("methods", methods)
        if isinstance(methods, (list, tuple)):
            methods = ", ".join(methods)
        if isinstance(allowed, (list, tuple, set, frozenset)):
            if origin is None or origin not in allowed:
                return [("Vary", "Origin")]
            allow_origin = origin
        else:
            allow_origin = str(allowed)
    headers = [
        ("Access-Control-Allow-Origin", allow_origin),
        ("Access-Control-Allow-Methods", methods),
        ("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS),
        ("Access-Control-Max-Age", "0"),
    ]
    if allow_origin != "*":
        headers.append(("Vary", "Origin"))
    return headers


# Content types and compression ------------------------------------------

_JSON_TYPES = frozenset(
    {
        "",
        "application/json",
        "application/json-rpc",
        "application/jsonrequest",
        "text/json",
        "text/plain",
    }
)


def acceptable_content_type(value: Optional[str], allow_form: bool = False) -> bool:
    """Whether a request's C{Content-Type} may carry a JSON-RPC body."""
    if value is None:
        return True
    mime = value.split(";", 1)[0].strip().lower()
    if mime in _JSON_TYPES or mime.endswith("+json"):
        return True
    return allow_form and mime == "application/x-www-form-urlencoded"


def accepts_gzip(accept_encoding: Optional[str]) -> bool:
    """Whether an C{Accept-Encoding} value allows gzip (and not C{q=0})."""
    if not accept_encoding:
        return False
    for part in accept_encoding.lower().split(","):
        token, _, params = part.strip().partition(";")
        if token.strip() in ("gzip", "*"):
            q = params.replace(" ", "")
            return q not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def should_compress(
    accept_encoding: Optional[str], length: int, min_size: Optional[int], forced: Any
) -> bool:
    """
    gzip when the client accepts it and either the body is at least
    C{min_size} bytes or a method set C{allowCompress = True}; a method that
    set C{allowCompress = False} turns it off.
    """
    if forced is False or not accepts_gzip(accept_encoding):
        return False
    if forced is True:
        return True
    return min_size is not None and length >= min_size


# Stats ---------------------------------------------------------------------


class Stats:
    """
    Per-method call counts and timings (C{stats(inMS=False)}).

    Thread-safe: calls are recorded from the reactor thread, read from any.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._methods: Dict[Tuple[str, str], List[float]] = {}
        self.processing = 0
        self.requests = 0
        self.started = time.monotonic()

    def record(self, path: str, name: str, seconds: float, ok: bool) -> None:
        """Count one finished call."""
        with self._lock:
            entry = self._methods.get((path, name))
            if entry is None:
                entry = self._methods[(path, name)] = [0, 0, 0.0, 0.0]
            entry[0] += 1
            if not ok:
                entry[1] += 1
            entry[2] += seconds
            if seconds > entry[3]:
                entry[3] = seconds

    def snapshot(self, in_ms: bool = False) -> Dict[str, Any]:
        """
        The figures: C{methods} maps C{"<path> <name>"} to C{count},
        C{errors}, C{total}, C{average}, C{max} (seconds, or milliseconds with
        C{in_ms}); C{speedStats} has flaskJSONRPCServer's C{<name>_average}
        and C{<name>_max} keys.
        """
        scale = 1000.0 if in_ms else 1.0
        methods: Dict[str, Any] = {}
        speed: Dict[str, float] = {}
        with self._lock:
            items = [(k, list(v)) for k, v in self._methods.items()]
            processing = self.processing
            requests = self.requests
        for (path, name), (count, errors, total, longest) in sorted(items):
            average = total / count if count else 0.0
            methods[f"{path} {name}"] = {
                "path": path,
                "method": name,
                "count": count,
                "errors": errors,
                "total": round(total * scale, 6),
                "average": round(average * scale, 6),
                "max": round(longest * scale, 6),
            }
            speed[f"{name}_average"] = round(average * scale, 6)
            speed[f"{name}_max"] = round(longest * scale, 6)
        uptime = time.monotonic() - self.started
        return {
            "inMS": in_ms,
            "methods": methods,
            "speedStats": speed,
            "processingDispatcherCount": processing,
            "requestCount": requests,
            "uptime": round(uptime * scale, 3),
        }


# Locks -------------------------------------------------------------------


class Locks:
    """
    flaskJSONRPCServer's C{lock}/C{unlock}: a global lock and per-function
    locks; a function unlocked with C{exclusive=True} runs even while the
    whole server is locked.  Calls of a locked function wait (the adapter
    holds them until L{locked} turns false).
    """

    def __init__(self) -> None:
        self.global_lock = False
        self._funcs: Dict[Any, Optional[bool]] = {}

    def lock(self, func: Any = None) -> None:
        """Lock everything, or one function."""
        if func is None:
            self.global_lock = True
        else:
            self._funcs[lock_key(func)] = True

    def unlock(self, func: Any = None, exclusive: bool = False) -> None:
        """Unlock everything, or one function (C{exclusive}: even under a global lock)."""
        if func is None:
            self.global_lock = False
        else:
            key = lock_key(func)
            if exclusive:
                self._funcs[key] = False
            else:
                self._funcs.pop(key, None)

    def active(self) -> bool:
        """Whether any lock is set (the fast path skips the lookups otherwise)."""
        return self.global_lock or bool(self._funcs)

    def locked(self, key: Any = None) -> bool:
        """Whether calls of C{key} (or, for L{None}, all calls) must wait."""
        if key is None:
            return self.global_lock
        state = self._funcs.get(key)
        if state is False:
            return False
        return bool(state) or self.global_lock
