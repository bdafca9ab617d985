"""
What a JSON-RPC path serves: its L{Dispatcher}, L{Method}s and L{PathOptions}.

Invalid params (-32602) are decided here, by binding the params to the
method's signature (L{Binder}) before the method is called, never by
catching a C{TypeError} raised inside it.  L{Connection} is what the magic
keyword parameter (C{_connection}) gives a method.  Pure: no I/O, no
Twisted.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional

from twistbridge.jsonrpc._openrpc import DISCOVER, describe
from twistbridge.jsonrpc._state import lock_key


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
    @ivar json_default: C{json_default(obj)} gives what to write for an
        object of a result that JSON cannot hold (a C{Decimal}, a date...),
        as C{json.dumps}'s C{default}; L{None}: such a result is an error
        (-32603).
    """

    cors: Any = False
    jsonp: bool = False
    auth: Optional[Callable[..., Any]] = None
    blocking: bool = False
    compress_min_size: Optional[int] = None
    magic_var: str = "_connection"
    max_batch_size: int = 1000
    allow_form_content: bool = False
    json_default: Optional[Callable[[Any], Any]] = None

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
        if opts.json_default is not None and not callable(opts.json_default):
            raise ValueError("json_default must be callable: json_default(obj)")
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


class AttrDict(Dict[str, Any]):
    """A dict whose keys are also attributes (C{d.name} is C{d["name"]})."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class Connection(AttrDict):
    """
    What the magic keyword (C{_connection}) gives a method: the client's
    C{ip}, C{headers}, C{cookies}, the C{cookiesOut} list and C{headersOut}
    dict to fill, C{allowCompress} to set, and the C{server}.  Readable as
    attributes or as keys, like flaskJSONRPCServer's.
    """

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

        items = {
            k: v
            for k, v in self.items()
            if k not in ("server", "call", "_call", "_parent", "_compressChoice")
        }
        # The compatibility server gives its own (with call and server).
        make = getattr(dict.get(self, "server"), "worker_connection", None)
        return Snapshot(items) if make is None else make(self, items)


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
