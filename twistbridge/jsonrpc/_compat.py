"""
Drop-in replacement for flaskJSONRPCServer: C{from twistbridge.jsonrpc import
JSONRPCServer} (alias C{flaskJSONRPCServer})::

    server = flaskJSONRPCServer(("127.0.0.1", 7001), cors=True)
    server.registerFunction(echo, path="/api")
    server.serveForever()

The class builds its own L{twistbridge.Bridge} (JSON-RPC only: no izzati,
Igor or bgpy listener) and serves it with Twisted.  C{serveForever()} runs
the reactor in the calling thread; C{start()} runs it in a background thread
(started once per process) and returns once the listeners are bound, so
C{stop()}, C{restart()} and C{start()} again work from the main program.

The module is long because it is one class: flaskJSONRPCServer's whole
public API (and the few private helpers its example programs call), each
method short; the behaviour behind C{auth}, C{_connection},
C{simulateRequest} and C{getWSGI} is in L{twistbridge.jsonrpc._compat}.
"""

from __future__ import annotations

import datetime
import decimal
import inspect
import json
import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import threadable

from twistbridge.app import Bridge
from twistbridge.jsonrpc._compathttp import MainError as MainError
from twistbridge.jsonrpc._controller import RpcController
from twistbridge.jsonrpc._resource import RpcResource
from twistbridge.jsonrpc.execBackend import IPCFlags
from twistbridge.jsonrpc.execBackend import _Backend as ExecBackend

__all__ = [
    "JSONRPCServer",
    "flaskJSONRPCServer",
]

#: The version of flaskJSONRPCServer whose API this class offers.
__version__ = "0.9.2"

#: The name the one-line start-up errors begin with.
PROGRAM = "flaskJSONRPCServer"

#: Constructor arguments about flaskJSONRPCServer's own machinery, which
#: Twisted replaces, with their defaults (other values are logged as ignored).
_IGNORED = {
    "gevent": False,
    "debug": False,
    "tweakDescriptors": False,
    "jsonBackend": "json",
    "notifBackend": "simple",
    "experimental": False,
    "controlGC": True,
    "servBackend": "auto",
}


class _Settings(dict):
    """flaskJSONRPCServer's C{settings}: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


log = Logger()

_BACKENDS = {
    None: None,
    "simple": None,
    "auto": None,
    "thread": "thread",
    "threaded": "thread",
    "threadPool": "thread",
    "reactor": "reactor",
    "process": "process",
    "processes": "process",
    "parallel": "process",
    "parallelWithSocket": "process",
}

_logging_started = False
_reactor_thread: Optional[threading.Thread] = None


def _run_in(backend: Any) -> Optional[str]:
    """Map a flaskJSONRPCServer C{dispatcherBackend} (a name or an exec backend) to a C{run_in}."""
    if isinstance(backend, ExecBackend):
        return backend.run_in
    if isinstance(backend, str) or backend is None:
        if backend in _BACKENDS:
            return _BACKENDS[backend]
    raise ValueError(
        f"dispatcherBackend {backend!r} is not supported; use one of "
        f"{', '.join(sorted(k for k in _BACKENDS if k))} (or run_in=...)"
    )


def _description(address: Any, ssl: Any = None) -> str:
    """An endpoint description for a flaskJSONRPCServer address."""
    from twistbridge.endpoints import endpoint_description

    if isinstance(address, str):
        if address.isdigit():
            address = ("127.0.0.1", address)
        elif ":" in address and not address.startswith("/"):
            return address  # already an endpoint description
        else:
            return endpoint_description(address)
    host, port = address[0], address[1] if len(address) > 1 else None
    if isinstance(host, str) and host.startswith("/"):
        return endpoint_description(host)
    if host in (None, "", "localhost"):
        host = "127.0.0.1"
    if ssl:
        key, cert = ssl[0], ssl[1]
        return endpoint_description((host, port), "ssl", privateKey=key, certKey=cert)
    return endpoint_description((host, port))


def _descriptors_near_limit(multiply: float = 1.25) -> bool:
    """Whether the open descriptors, times C{multiply}, reach the soft limit."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        used = len(os.listdir(f"/proc/{os.getpid()}/fd"))
    except (ImportError, OSError):
        return False
    return limit != resource.RLIM_INFINITY and used * multiply >= limit


def _begin_logging() -> None:
    global _logging_started
    if _logging_started:
        return
    _logging_started = True
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stdout)], redirectStandardIO=False
    )


class JSONRPCServer:
    """
    flaskJSONRPCServer's server class on Twisted (see the module docstring).

    The constructor takes flaskJSONRPCServer's arguments.  Those about its
    own machinery (C{gevent}, C{debug}, C{tweakDescriptors}, C{jsonBackend},
    C{notifBackend}, C{experimental}, C{controlGC}, C{servBackend}) are
    accepted and ignored.  Other keywords are L{twistbridge.Bridge} settings
    (C{max_request_size}, C{threads}, C{processes}, C{idle_timeout}, ...).

    @ivar bridge: the L{Bridge} this server serves.
    @ivar addresses: the endpoint descriptions it listens on.
    @ivar ports: the bound ports while it runs (C{getHost()} gives the address).
    """

    def __init__(
        self,
        bindAdress: Any,
        multipleAdress: bool = False,
        blocking: bool = False,
        cors: Any = False,
        gevent: bool = False,
        debug: bool = False,
        log: Any = 3,
        fallback: bool = True,
        allowCompress: bool = False,
        ssl: Any = False,
        tweakDescriptors: Any = False,
        compressMinSize: int = 1 * 1024 * 1024,
        jsonBackend: Any = "json",
        notifBackend: Any = "simple",
        dispatcherBackend: Any = "simple",
        auth: Optional[Callable[..., Any]] = None,
        experimental: bool = False,
        controlGC: bool = True,
        magicVarForDispatcher: str = "_connection",
        name: Optional[str] = None,
        servBackend: Any = "auto",
        parentModule: Any = None,
        **settings: Any,
    ) -> None:
        self.started = False
        self.exited = False
        self.version = __version__
        self.jsonBackend = json
        self.execBackend: Dict[str, Any] = {}
        self.settings = self.setts = _Settings(
            blocking=blocking,
            fallback_JSONP=fallback,
            postprocess={"byStatus": {}},
            CORS=cors,
            gevent=gevent,
            servBackend=servBackend,
            debug=debug,
            log=log,
            allowCompress=allowCompress,
            compressMinSize=compressMinSize,
            ssl=ssl,
            auth=auth,
            experimental=experimental,
            controlGC=controlGC,
            magicVarForDispatcher=magicVarForDispatcher,
        )
        given = locals()
        self._ignored = [
            f"{k}={given[k]!r}"
            for k, default in _IGNORED.items()
            if given[k] != default
        ]
        if (
            isinstance(dispatcherBackend, ExecBackend)
            and dispatcherBackend.run_in == "process"
        ):
            settings.setdefault("processes", dispatcherBackend.poolSize)
        self._sized = "processes" in settings
        settings.setdefault("igor_port", "none")
        settings.setdefault("bgpy_port", "none")
        self.bridge = Bridge(**settings)
        self.name = name or f"flaskJSONRPCServer-{id(self):x}"
        self.log_level = log
        if not bindAdress:
            addresses = []  # no listeners: simulateRequest and getWSGI only
        else:
            addresses = list(bindAdress) if multipleAdress else [bindAdress]
        self._given = addresses
        self.addresses: List[str] = [_description(a, ssl) for a in addresses]
        self.default_run_in = _run_in(dispatcherBackend)
        self.default_backend = (
            dispatcherBackend if isinstance(dispatcherBackend, ExecBackend) else None
        )
        self._backend_of: Dict[Any, Any] = {}
        self._ipc_flags = IPCFlags()
        self.rpc: RpcController = self.bridge.rpc
        self.rpc.server = self
        self.rpc.default_path = "/"
        self.rpc.defaults = {
            "cors": cors,
            "jsonp": bool(fallback),
            "blocking": bool(blocking),
            "compress_min_size": compressMinSize if allowCompress else None,
            "magic_var": magicVarForDispatcher,
            "allow_form_content": True,
            "json_default": self._json_default,
        }
        if auth is not None and not callable(auth):
            raise MainError("auth must be a function: auth(server, request) -> True")
        self.root = RpcResource(self.rpc, "/")
        self.rpc.add_root(self.root)
        #: flaskJSONRPCServer's hook for what JSON cannot hold (see L{_fixJSON}).
        self.fixJSON: Any = self._fixJSON
        self._parentModule = parentModule
        # The link of the process-pool methods' call.eval, copyGlobal...
        from twistbridge.jsonrpc._parent import WorkerLink

        self._link = WorkerLink(self, f"flaskJSONRPCServer-{id(self):x}")
        self.rpc.offloader.upcalls[self._link.name] = self._link
        self.ports: List[Any] = []
        self._service: Optional[MultiService] = None
        self._owns_reactor = False
        self._stopped = threading.Event()
        self._stopped.set()

    # flaskJSONRPCServer's attributes ------------------------------------------

    #: flaskJSONRPCServer's description of C{_connection} (see the migration guide).
    aboutMagicVarForDispatcher = (
        "The magic parameter (_connection by default, see magicVarForDispatcher): "
        "ip, headers, cookies, headersOut, cookiesOut, jsonp, allowCompress, "
        "server, serverName, path, method, dispatcherName, dispatcher, request, "
        "notify, uniqueId, mimeType, nativeThread, execBackendId and call "
        "(lock, unlock, wait, lockThis, unlockThis, waitThis, sleep, log)."
    )

    @property
    def routes(self) -> Dict[str, Dict[str, Dict[str, Any]]]:
        """
        What is served, as flaskJSONRPCServer's C{routes}: C{{"/api/":
        {"echo": {"link": echo, "allowJSONP": True, "args": ("data",),
        "dispatcherBackendId": "simple", ...}}}} (a fresh copy: to change
        it, register or reload).
        """
        from twistbridge.jsonrpc._compathttp import format_path

        routes: Dict[str, Dict[str, Dict[str, Any]]] = {}
        for path in self.rpc.paths():
            disp = self.rpc.dispatcher(path)
            if disp is None or not disp.methods:
                continue
            entries = routes[format_path(path)] = {}
            for name, method in disp.methods.items():
                func = method.handler.func
                try:
                    args = tuple(
                        p.name
                        for p in inspect.signature(func).parameters.values()
                        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    )
                except (TypeError, ValueError):
                    args = ()
                process = method.handler.run_in == "process"
                entries[name] = {
                    "allowJSONP": disp.options.jsonp
                    if method.jsonp is None
                    else method.jsonp,
                    "link": func,
                    "dispatcherBackendId": "parallelWithSocket"
                    if process
                    else "simple",
                    "notifBackendId": "parallelWithSocket" if process else "simple",
                    "args": args,
                }
        return routes

    @property
    def locked(self) -> bool:
        """Whether the whole server is locked (L{lock} without a dispatcher)."""
        return bool(self.rpc.wait(None, None, True))

    @property
    def processingDispatcherCount(self) -> int:
        """How many calls are running now."""
        return self.rpc.stats_data.processing

    @property
    def processingRequestCount(self) -> int:
        """The same as L{processingDispatcherCount} (the original's other name)."""
        return self.rpc.stats_data.processing

    # registration ------------------------------------------------------

    def registerFunction(
        self,
        dispatcher: Callable[..., Any],
        path: str = "/",
        fallback: Optional[bool] = None,
        name: Optional[str] = None,
        dispatcherBackend: Any = None,
        notifBackend: Any = None,
        run_in: Optional[str] = None,
    ) -> None:
        """
        Serve C{dispatcher} at C{path} under C{name} (default: its name) and
        its C{_alias} names; C{fallback} switches JSONP for it.  A name
        already served at C{path} is replaced, as flaskJSONRPCServer does.
        """
        if run_in is None:
            # "simple" given here means: as plain functions run (not the default)
            run_in = (
                self.default_run_in
                if dispatcherBackend is None
                else _run_in(dispatcherBackend)
            )
        backend = (
            self.default_backend if dispatcherBackend is None else dispatcherBackend
        )
        self._note_backend(dispatcher, path, name, backend)
        self.bridge.rpc_function(
            dispatcher,
            path=path,
            name=name,
            run_in=run_in,
            jsonp=fallback,
            replace=True,
        )

    def registerInstance(
        self,
        dispatcher: Any,
        path: str = "/",
        fallback: Optional[bool] = None,
        dispatcherBackend: Any = None,
        notifBackend: Any = None,
        includePrivate: Optional[Sequence[str]] = None,
        filter: Optional[Callable[[Any, str, Any], Any]] = None,
        run_in: Optional[str] = None,
    ) -> None:
        """
        Serve every public method of C{dispatcher} at C{path} (and the
        private ones named in C{includePrivate}).  C{filter(dispatcher,
        name, method)}, when given, decides for every attribute, private
        ones too, and returns C{(use, name, method)}, as in
        flaskJSONRPCServer.
        """
        include = set(includePrivate or ())
        for attr in dir(dispatcher):
            member = getattr(dispatcher, attr)
            name = attr
            if filter is not None:
                use, name, member = filter(dispatcher, attr, member)
                if not use:
                    continue
            elif attr.startswith("_") and attr not in include:
                continue
            if not inspect.ismethod(member) and not inspect.isfunction(member):
                continue
            self.registerFunction(
                member, path, fallback, name, dispatcherBackend, notifBackend, run_in
            )

    # postprocessers --------------------------------------------------------

    def postprocessAdd(
        self,
        type: str,
        cb: Callable[..., Any],
        mode: Optional[str] = None,
        status: Any = None,
    ) -> None:
        """
        Run C{cb} on every answer with HTTP status or JSON-RPC error code
        C{status} (a number or a list).  C{type} C{"cb"}:
        C{cb(request, server, controller)} may return C{(status, data[,
        headers])}; C{"wsgi"}: C{cb} is a WSGI app whose answer replaces
        the original.  C{mode} C{"rewrite"} (default) keeps what they
        return, C{"fake"} only lets them look.
        """
        from twistbridge.jsonrpc._postprocess import MODES, TYPES

        if self.started:
            raise MainError("You can't add new postprocesser while server runned")
        if mode and mode not in MODES:
            raise MainError(
                f"Unsupported postprocess-mode, now supported only {list(MODES)}"
            )
        if type not in TYPES:
            raise MainError(
                f"Unsupported postprocess-type, now supported only {list(TYPES)}"
            )
        if status is None:
            raise MainError("Postprocessers without conditions currently not supported")
        by_status = self.settings["postprocess"]["byStatus"]
        for code in status if isinstance(status, (list, tuple)) else [status]:
            if not isinstance(code, int) or isinstance(code, bool):
                raise TypeError("<status> must be number or list of numbers")
            by_status.setdefault(code, []).append((type, mode, cb))

    def postprocessAdd_wsgi(
        self, wsgi: Any, mode: Optional[str] = None, status: Any = None
    ) -> None:
        """L{postprocessAdd} of a WSGI app."""
        self.postprocessAdd("wsgi", wsgi, mode, status)

    def postprocessAdd_cb(
        self, cb: Any, mode: Optional[str] = None, status: Any = None
    ) -> None:
        """L{postprocessAdd} of a plain callback."""
        self.postprocessAdd("cb", cb, mode, status)

    # runtime API ---------------------------------------------------------

    def stats(self, inMS: bool = False, history: Any = 10) -> Dict[str, Any]:
        """Per-method call counts and timings (seconds, or ms with C{inMS})."""
        return self.rpc.stats(inMS)

    def lock(self, dispatcher: Any = None) -> None:
        """Lock the server or one function: calls wait until unlocked."""
        self.rpc.lock(dispatcher)

    def unlock(self, dispatcher: Any = None, exclusive: bool = False) -> None:
        """Unlock the server or one function (C{exclusive}: even under a global lock)."""
        self.rpc.unlock(dispatcher, exclusive)

    def wait(
        self,
        dispatcher: Any = None,
        sleepMethod: Any = None,
        returnStatus: bool = False,
    ) -> Any:
        """Wait while locked, or with C{returnStatus} say whether it is locked."""
        return self.rpc.wait(dispatcher, sleepMethod, returnStatus)

    def callAsync(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Run C{target} in a thread of its own (see L{RpcController.callAsync}).
        With C{redirectErrorsToLog} (a level, C{True}, or a function given
        the error) an exception is logged (or handed over) instead of
        raised, and the call returns L{None}.
        """
        redirect = kwargs.pop("redirectErrorsToLog", False)
        if redirect is False:
            return self.rpc.callAsync(target, *args, **kwargs)

        def guarded(*a: Any, **kw: Any) -> Any:
            try:
                return target(*a, **kw)
            except Exception as e:
                if callable(redirect) and not isinstance(redirect, bool):
                    redirect({"error": e, "target": target, "args": a, "kwargs": kw})
                else:
                    level = redirect if type(redirect) is int else 1
                    self._logger(level, str(e))
                return None

        return self.rpc.callAsync(guarded, *args, **kwargs)

    def reload(
        self,
        api: Any,
        clearOld: bool = False,
        timeout: float = 60,
        processingDispatcherCountMax: int = 0,
        safely: bool = True,
    ) -> bool:
        """
        Replace methods without stopping (see L{RpcController.reload}).  As
        in flaskJSONRPCServer, an entry naming its dispatcher by name loads
        it from the main program's file unless it gives C{scriptPath}, and
        a method reloaded under an existing name keeps that method's
        C{dispatcherBackend} and C{fallback} unless the entry sets them.
        """
        from twistbridge.jsonrpc._magic import script_path
        from twistbridge.jsonrpc._registry import normalize_path

        entries = []
        for o in api if isinstance(api, (list, tuple)) else [api]:
            if isinstance(o, dict):
                o = dict(o)
                if isinstance(o.get("dispatcher"), str) and not (
                    o.get("scriptPath") or o.get("module")
                ):
                    o["scriptPath"] = script_path(True)
                if o.get("dispatcherBackend") is not None and not o.get("run_in"):
                    o["run_in"] = _run_in(o["dispatcherBackend"])
                name = o.get("name") or o.get("dispatcherName")
                if name is None and isinstance(o.get("dispatcher"), str):
                    name = o["dispatcher"]
                disp = self.rpc.dispatcher(normalize_path(o.get("path") or "/"))
                old = disp.methods.get(name) if disp is not None and name else None
                if old is not None:
                    if not o.get("run_in"):
                        o["run_in"] = old.handler.run_in
                    if o.get("fallback") is None:
                        o["fallback"] = old.jsonp
                if o.get("run_in") == "process" and o.get("scriptPath"):
                    why = (
                        f"cannot reload {name!r}: it runs in the process pool, whose "
                        "workers keep the code they started with; reload it with "
                        "dispatcherBackend='simple', or restart the server"
                    )
                    if not safely:
                        raise MainError(why)
                    log.error("flaskJSONRPCServer: {why}; nothing reloaded", why=why)
                    return False
            entries.append(o)
        return self.rpc.reload(
            entries, clearOld, timeout, processingDispatcherCountMax, safely
        )

    # simulated requests and WSGI ---------------------------------------------

    def simulateRequest(
        self,
        dispatcherName: str,
        args: Any = None,
        path: str = "/",
        headers: Optional[Dict[str, str]] = None,
        cookies: Optional[Dict[str, str]] = None,
        notify: bool = False,
    ) -> Any:
        """
        Run one call as if a client had sent it, without a socket, and
        return C{(entries, headers)} as flaskJSONRPCServer does: C{entries}
        is C{[{"id": 1, "data": result}]}, or C{[{"code": ..., "message":
        ..., "id": 1}]} when the call failed (C{[]} for a notification);
        C{headers} the answer's C{(name, value)} list.  The server's
        C{auth} is asked first; postprocessers do not run.  Blocks until
        the call is done (the reactor is started in a background thread
        when none runs); in the reactor thread it returns a L{Deferred}.

        @raise MainError: when nothing is served at C{path} or C{auth}
            refuses.
        """
        from twistbridge.jsonrpc._simulate import simulate

        run = (self, dispatcherName, args, path, headers, cookies, notify)
        if threadable.isInIOThread() and self._reactor.running:
            return simulate(*run)
        self._ensure_reactor()
        from twisted.internet.threads import blockingCallFromThread

        return blockingCallFromThread(
            self._reactor,
            simulate,
            self,
            dispatcherName,
            args,
            path,
            headers,
            cookies,
            notify,
        )

    def getWSGI(self) -> Callable[..., Any]:
        """
        A WSGI app of this server's JSON-RPC paths (POST calls and
        batches, JSONP GETs, C{auth}), for a WSGI server of your own: each
        request blocks its WSGI thread while the calls run in twistbridge
        (whose reactor is started in a background thread if none runs).
        No postprocessers and no CORS there: those need C{serveForever()}.
        """
        from twistbridge.jsonrpc._simulate import wsgi_app

        self._ensure_reactor()
        return wsgi_app(self)

    # what _connection computes ---------------------------------------------

    def connection_extra(self, conn: Any, name: str) -> Any:
        """
        flaskJSONRPCServer's computed C{_connection} entries (C{call},
        C{dispatcher}, C{dispatcherName}, C{request}, C{serverName}, ...).

        @raise KeyError: for any other name.
        """
        from twistbridge.jsonrpc._magic import connection_extra

        try:
            return connection_extra(self, conn, name)
        except KeyError:
            return self._backend_entry(name)

    def _note_backend(
        self, dispatcher: Any, path: str, name: Optional[str], backend: Any
    ) -> None:
        """Remember which exec backend serves each name (for its C{_connection})."""
        from twistbridge.jsonrpc._registry import normalize_path

        aliases = getattr(dispatcher, "_alias", None) or []
        names = [name or getattr(dispatcher, "__name__", "")]
        names += [aliases] if isinstance(aliases, str) else list(aliases)
        for one in names:
            key = (normalize_path(path), one)
            if isinstance(backend, ExecBackend):
                self._backend_of[key] = backend
            else:
                self._backend_of.pop(key, None)
        if isinstance(backend, ExecBackend) and backend.run_in == "process":
            offloader = self.rpc.offloader
            if offloader._processpool is None and not self._sized:
                offloader.processes = backend.poolSize
                self._sized = True

    def _backend_entry(self, name: str) -> Any:
        """C{_connection.<id>} of a C{parallelWithSocketNew} backend, in this process."""
        flags = self._ipc_flags
        for backend in self._backend_of.values():
            if backend.id == name and backend.ipc and backend.overloadMagicVarInParent:
                from twistbridge.jsonrpc._worker import flag_calls
                from twistbridge.jsonrpc.utils import MagicDict

                def background(thunk: Callable[[], Any]) -> None:
                    threading.Thread(target=thunk, daemon=True).start()

                return MagicDict(
                    execBackend=backend,
                    execBackendId=backend.id,
                    **flag_calls(
                        lambda op, **args: getattr(flags, op)(**args), background
                    ),
                )
        raise KeyError(name)

    def worker_connection(self, conn: Any, items: Dict[str, Any]) -> Any:
        """
        The C{_connection} a process-pool method gets: these entries, the
        parallel backend's own (C{parallelType}, ...), and a C{call} and a
        C{server} that reach this process (L{twistbridge.jsonrpc._worker}).
        """
        from twistbridge.jsonrpc._registry import normalize_path
        from twistbridge.jsonrpc._worker import worker_connection

        size = self.rpc.offloader.processes
        backend = self._backend_of.get((normalize_path(conn["path"]), conn["method"]))
        ident = "parallelWithSocket" if backend is None else backend.id
        items.update(
            dispatcherName=conn["method"],
            serverName=self.name,
            execBackendId=ident,
            execBackend=backend,
            parallelType="withSocket",
            parallelPoolSize=size,
            parallelId=f"{ident}#child",
        )
        return worker_connection(items, self._link.name)

    def _fixJSON(self, o: Any) -> Any:
        """
        flaskJSONRPCServer's default C{fixJSON}: what JSON cannot hold in a
        result, as JSON: C{Decimal} as its text, dates and times in ISO
        8601, anything else C{null}.
        """
        if isinstance(o, decimal.Decimal):
            return str(o)
        if isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
            return o.isoformat()
        return None

    def _json_default(self, o: Any) -> Any:
        """The encoder's C{default}: C{fixJSON(o)} when it is callable, else C{null}."""
        fix = self.fixJSON
        return fix(o) if callable(fix) else None

    # flaskJSONRPCServer's private helpers that its examples call -------------

    def _logger(self, level: Any, *args: Any) -> None:
        """Log a message at flaskJSONRPCServer's C{level} (1 error ... 4 debug)."""
        from twistbridge.jsonrpc._magic import logger

        logger(self, level, *args)

    _log = _logger

    def _sleep(self, s: float, forceNative: bool = False) -> Any:
        """C{time.sleep} (in the reactor thread: a L{Deferred} to await)."""
        from twistbridge.jsonrpc._magic import sleep

        return sleep(s)

    def _thread(
        self,
        target: Callable[..., Any],
        args: Any = None,
        kwargs: Optional[Dict[str, Any]] = None,
        forceNative: bool = False,
    ) -> threading.Thread:
        """Run C{target} in a new daemon thread, started, and return it."""
        thread = threading.Thread(
            target=target, args=tuple(args or ()), kwargs=kwargs or {}, daemon=True
        )
        thread.start()
        return thread

    def _getms(self, inMS: bool = True) -> float:
        """The time now in milliseconds (C{inMS=False}: seconds)."""
        from twistbridge.jsonrpc._magic import getms

        return getms(inMS)

    def _getScriptPath(
        self, full: bool = False, real: bool = True, f: Any = None
    ) -> str:
        """The main program's directory, or with C{full} its file."""
        from twistbridge.jsonrpc._magic import script_path

        return script_path(full, real, f)

    @staticmethod
    def _isString(value: Any) -> bool:
        """Whether C{value} is text (or bytes)."""
        return isinstance(value, (str, bytes))

    def _loadPostData(self, request: Dict[str, Any]) -> str:
        """The body of a request dict (as postprocessers get it), as text."""
        data = request.get("data")
        if data is None:
            stream = request.get("environ", {}).get("wsgi.input")
            data = stream.read() if stream is not None else b""
            request["data"] = data
        if isinstance(data, bytes):
            return data.decode("utf-8", "surrogateescape")
        return data

    def _importThreading(self, scope: Any = None, forceDelete: bool = True) -> None:
        """Nothing to do: there is no gevent to patch with (kept for old programs)."""

    _importSocket = _importAll = _importThreading

    def _throw(self, data: str) -> None:
        """Raise L{MainError}."""
        raise MainError(data)

    def _ensure_reactor(self) -> None:
        """Run the reactor in a background thread unless it already runs."""
        global _reactor_thread
        reactor = self._reactor
        if reactor.running:
            return
        ready = threading.Event()
        reactor.callWhenRunning(ready.set)
        _reactor_thread = threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},
            name="twistbridge-reactor",
            daemon=True,
        )
        _reactor_thread.start()
        ready.wait()

    # lifecycle -------------------------------------------------------------

    @property
    def _reactor(self) -> Any:
        return self.rpc.reactor

    def _start_service(self) -> Deferred:
        if self._service is not None:
            return defer.succeed(None)
        from twistbridge.limits import HTTP_REFUSAL
        from twistbridge.service import ListenerService
        from twistbridge.web import BridgeSite

        # The bridge's own site (header and idle timeouts, early 413, access
        # log), serving this server's JSON-RPC-only root.
        site = BridgeSite(self.root, self.bridge.settings)
        from twistbridge.jsonrpc._compathttp import compat_request

        site.requestFactory = compat_request(self, site.requestFactory)
        if self.settings["postprocess"]["byStatus"]:
            from twistbridge.jsonrpc._postprocess import postprocess_request

            site.requestFactory = postprocess_request(self, site.requestFactory)
        s = self.bridge.settings
        service = MultiService()
        for i, description in enumerate(self.addresses):
            name = "http" if i == 0 else f"http{i + 1}"
            ListenerService(
                name,
                description,
                site,
                self._reactor,
                max_connections=s.max_connections,
                max_connections_per_client=s.max_connections_per_client,
                refusal=HTTP_REFUSAL,
            ).setServiceParent(service)
        try:
            service.startService()
        except BaseException:
            service.stopService()
            return defer.fail()
        self.started = True
        self._service = service
        self.ports = [s.port for s in service]
        self._stopped.clear()
        return defer.succeed(None)

    def _stop_service(
        self, timeout: float = 20, processingDispatcherCountMax: int = 0
    ) -> Deferred:
        service, self._service = self._service, None
        self.ports = []
        self.started = False
        if service is None:
            self._stopped.set()
            return defer.succeed(None)
        d = defer.maybeDeferred(service.stopService)
        deadline = self._reactor.seconds() + timeout

        def drained(_: Any = None) -> Any:
            busy = self.rpc.stats_data.processing > processingDispatcherCountMax
            if busy and self._reactor.seconds() < deadline:
                return task.deferLater(self._reactor, 0.05, drained)
            if not getattr(self, "_restarting", False):
                # (a restart is no stop: serveForever() keeps waiting)
                self._stopped.set()
            return None

        d.addCallback(drained)
        return d

    def _in_reactor(self, func: Callable[..., Any], *args: Any) -> Any:
        if threadable.isInIOThread() or not self._reactor.running:
            return func(*args)
        from twisted.internet.threads import blockingCallFromThread

        return blockingCallFromThread(self._reactor, func, *args)

    def start(self, joinLoop: bool = False) -> Any:
        """
        Start serving.  Without a running reactor, one is started in a
        background thread first.  Returns once the listeners are bound
        (C{joinLoop=True}: blocks until the server stops).  Called in the
        reactor thread it returns a L{Deferred}.
        """
        if self.log_level:
            _begin_logging()
        reactor = self._reactor
        if threadable.isInIOThread() and reactor.running:
            return self._start_service()
        self._ensure_reactor()
        self._bind_or_exit(lambda: self._in_reactor(self._start_service))
        if joinLoop:
            self._stopped.wait()
        return None

    def _address_of(self, listener: str) -> str:
        """The address, as given to the constructor, of listener C{http}, C{http2}, ..."""
        index = 0 if listener == "http" else int(listener[4:] or 1) - 1
        address = self._given[index] if index < len(self._given) else listener
        if isinstance(address, (tuple, list)) and len(address) == 2:
            return f"{address[0]}:{address[1]}"
        return str(address)

    def _bind_or_exit(self, bind: Callable[[], Any]) -> None:
        """Bind with C{bind}; when a port is taken, one line and exit status 1."""
        from twistbridge._compatrun import bind_or_exit

        bind_or_exit(bind, PROGRAM, self._address_of)
        if self._ignored:
            log.info(
                "flaskJSONRPCServer: {args} ignored: Twisted serves, no gevent, "
                "no custom backends",
                args=", ".join(self._ignored),
            )

    def serveForever(self, restartOn: Any = False, sleep: float = 10) -> None:
        """
        Serve until stopped: runs the reactor in this thread (Ctrl-C or
        SIGTERM stop it), or, after C{start()}, waits until C{stop()}.

        @param restartOn: a function (or a list of them, or
            C{"checkFileDescriptor"}) checked every C{sleep} seconds, in a
            worker thread: the server restarts when one returns C{True}
            (C{"checkFileDescriptor"}: when the open descriptors, counted
            1.25 times, reach the soft limit).
        """
        if self.log_level:
            _begin_logging()
        reactor = self._reactor
        checks = restartOn if isinstance(restartOn, (list, tuple)) else [restartOn]
        checks = [c for c in checks if c]
        if reactor.running:
            if self._service is None:
                self.start()
            if checks:
                reactor.callFromThread(self._watch_restart, checks, sleep)
            self._stopped.wait()
            return

        from twistbridge._compatrun import run_standalone

        if checks:
            reactor.callWhenRunning(self._watch_restart, checks, sleep)
        self._owns_reactor = True
        try:
            run_standalone(
                PROGRAM,
                self._address_of,
                start=lambda: self._bind_or_exit(self._start_service),
                stop=lambda: self._stop_service(self.bridge.settings.shutdown_timeout),
                reactor=reactor,
            )
        finally:
            self._owns_reactor = False

    def _watch_restart(self, checks: List[Any], every: float) -> None:
        """Check C{checks} every C{every} seconds; restart when one says so."""

        def due() -> bool:
            for check in checks:
                if check == "checkFileDescriptor":
                    if _descriptors_near_limit():
                        return True
                elif callable(check) and check(self) is True:
                    return True
            return False

        def tick() -> Any:
            if self._service is None:
                return None
            d = self.bridge.offloader.in_thread(due)

            def decided(restart: bool) -> Any:
                if restart and self._service is not None:
                    log.info("flaskJSONRPCServer: restarting (restartOn)")
                    return self.restart()
                return None

            d.addCallback(decided)
            d.addErrback(lambda f: log.failure("restartOn check raised", f))
            return d

        loop = task.LoopingCall(tick)
        loop.clock = self._reactor
        loop.start(every, now=False).addErrback(
            lambda f: log.failure("restartOn loop failed", f)
        )

    def stop(self, timeout: float = 20, processingDispatcherCountMax: int = 0) -> Any:
        """
        Stop listening and wait (up to C{timeout} seconds) for running calls
        to finish.  When C{serveForever()} runs the reactor, it returns.
        """

        def stop_now() -> Deferred:
            d = self._stop_service(timeout, processingDispatcherCountMax)
            if self._owns_reactor and not getattr(self, "_restarting", False):
                d.addCallback(lambda _: self._reactor.stop())
            return d

        return self._in_reactor(stop_now)

    def restart(
        self,
        timeout: float = 20,
        processingDispatcherCountMax: int = 0,
        joinLoop: bool = False,
        werkzeugTimeout: float = 3,
    ) -> Any:
        """
        C{stop()} then C{start()}; no pause is needed (ports are freed at
        once), so older versions' C{werkzeugTimeout} is ignored.
        """

        def restart_now() -> Deferred:
            self._restarting = True
            d = self._stop_service(timeout, processingDispatcherCountMax)

            def again(_: Any) -> Deferred:
                self._restarting = False
                return self._start_service()

            d.addCallback(again)
            return d

        result = self._in_reactor(restart_now)
        if joinLoop and not threadable.isInIOThread():
            self._stopped.wait()
        return result


class flaskJSONRPCServer(JSONRPCServer):
    """flaskJSONRPCServer's name for L{JSONRPCServer}: the same server."""
