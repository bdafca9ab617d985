"""
JSON-RPC's twisted.web adapter: one resource per registered path.

L{mount} puts an L{RpcResource} at every path the app registered (C{/rpc},
C{/api}, nested paths such as C{/api/v2}); each answers

    POST <path>                  JSON-RPC 2.0 (single, batch, notifications)
    OPTIONS <path>               CORS preflight
    GET <path>/<method>?a=1&jsonp=cb   JSONP fallback (when switched on)

The decisions (parse, validate, bind, encode) are L{twistbridge.jsonrpc._core}'s;
this module reads the request, runs the calls through the bridge's
L{twistbridge.offload.Offloader} (a batch's calls run concurrently), and
writes the answer.  L{RpcController} is the runtime shared by every path of
a bridge: dispatchers, C{lock}/C{unlock}/C{wait}, C{stats}, C{reload},
C{callAsync}, and the one-call-at-a-time lock of C{blocking} paths.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import itertools
import os
import threading
import time
from io import BytesIO
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred, DeferredLock
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistbridge.app import RpcMethod, normalize_path, rpc_entries
from twistbridge.errors import not_json_text
from twistbridge.jsonrpc import _core as core
from twistbridge.offload import OffloadError

log = Logger()

_JSON = b"application/json"
_perf = time.perf_counter
_reload_ids = itertools.count(1)


def controller(bridge: Any) -> RpcController:
    """The L{RpcController} of C{bridge}, created on first use."""
    ctl = bridge._built.get("rpc")
    if ctl is None:
        ctl = bridge._built["rpc"] = RpcController(bridge)
    return ctl


def mount(root: Resource, bridge: Any) -> None:
    """Put a JSON-RPC resource on C{root} at every path the app registered."""
    controller(bridge).add_root(root)


def read_body(request: Any, limit: Optional[int]) -> Optional[bytes]:
    """
    The request body, or L{None} when it is over C{limit} bytes.  A
    L{twistbridge.web.BridgeSite} already answered 413 before reading such a
    body (it asks L{RpcResource.max_body_size}); this check is for the
    resource mounted on other sites, and never reads more than C{limit + 1}
    bytes.
    """
    consumer = getattr(request, "body_consumer", None)
    content = consumer.content if consumer is not None else request.content
    if content is None:
        return b""
    content.seek(0)
    if not limit:
        return content.read()
    body = content.read(limit + 1)
    return None if len(body) > limit else body


_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")
_is_form: Dict[bytes, bool] = {}


class FormBody:
    """
    The body of a request sent with a form C{Content-Type}, kept as bytes for
    the JSON-RPC parser (L{RpcResource.body_consumer}).

    @ivar content: the body so far.
    """

    def __init__(self) -> None:
        self.content = BytesIO()

    def write(self, data: bytes) -> None:
        """Append C{data}."""
        self.content.write(data)

    def abort(self, reason: Any) -> None:
        """The body will never complete: drop it."""
        self.content = BytesIO()


_content_types: Dict[Tuple[bytes, bool], bool] = {}


def acceptable_content_type(value: bytes, allow_form: bool) -> bool:
    """L{core.acceptable_content_type} for a raw header, memoized."""
    key = (value, allow_form)
    ok = _content_types.get(key)
    if ok is None:
        ok = core.acceptable_content_type(value.decode("latin-1"), allow_form)
        if len(_content_types) < 256:
            _content_types[key] = ok
    return ok


class RpcController:
    """
    The JSON-RPC runtime of one bridge.

    @ivar bridge: the L{twistbridge.Bridge}.
    @ivar defaults: options every path starts from (the compatibility class
        puts its constructor's options here).
    @ivar default_path: the path of C{reload} entries that name none.
    @ivar server: what C{_connection.server} is (this controller, or the
        compatibility server).
    @ivar locks: the C{lock}/C{unlock} state.
    @ivar stats_data: the L{core.Stats}.
    """

    def __init__(self, bridge: Any, reactor: Any = None) -> None:
        self._reactor = reactor
        self.bridge = bridge
        self.defaults: Dict[str, Any] = {}
        self.default_path = "/rpc"
        self.server: Any = self
        self.locks = core.Locks()
        self.stats_data = core.Stats()
        self.blocking_lock = DeferredLock()
        self._mutex = threading.RLock()
        self._version = -1
        self._dispatchers: Dict[str, core.Dispatcher] = {}
        self._roots: List[Resource] = []
        self._waiters: List[tuple] = []

    @property
    def reactor(self) -> Any:
        """The reactor (imported on first use, so that apps may build early)."""
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    # dispatchers ----------------------------------------------------------

    def dispatcher(self, path: str) -> Optional[core.Dispatcher]:
        """The L{core.Dispatcher} of C{path}, or L{None}."""
        if self.bridge.rpc_version != self._version:
            self._rebuild()
        return self._dispatchers.get(path)

    def paths(self) -> List[str]:
        """Every path with a dispatcher."""
        if self.bridge.rpc_version != self._version:
            self._rebuild()
        return sorted(self._dispatchers)

    def _rebuild(self) -> None:
        with self._mutex:
            version = self.bridge.rpc_version
            methods: List[RpcMethod] = list(self.bridge.rpc_methods)
            options = dict(self.bridge.rpc_options)
            paths = {m.path for m in methods} | set(options) | {self.default_path}
            dispatchers: Dict[str, core.Dispatcher] = {}
            for path in paths:
                opts = core.PathOptions.from_dict(
                    {**self.defaults, **options.get(path, {})}
                )
                dispatchers[path] = core.Dispatcher(path, {}, opts)
            for m in methods:
                d = dispatchers[m.path]
                d.methods[m.name] = core.Method(
                    m.name, m.handler, d.options.magic_var, m.jsonp
                )
            self._dispatchers = dispatchers
            self._version = version
            for root in self._roots:
                for path in dispatchers:
                    self._mount_path(root, path)

    def add_root(self, root: Resource) -> None:
        """Mount every path on C{root}, and later paths as they appear."""
        self._roots.append(root)
        for path in self.paths():
            self._mount_path(root, path)

    def _mount_path(self, root: Resource, path: str) -> None:
        if path == "/":
            if not isinstance(root, RpcResource):
                log.error(
                    "JSON-RPC path / is not served on this site (POST / is the "
                    "izzati endpoint); register the methods under another path"
                )
            return
        node = root
        prefix = ""
        for segment in path.strip("/").split("/"):
            prefix += "/" + segment
            name = segment.encode("utf-8")
            child = node.children.get(name)
            if child is None:
                child = RpcResource(self, prefix)
                node.putChild(name, child)
            elif not isinstance(child, RpcResource):
                raise ValueError(
                    f"JSON-RPC path {path} conflicts with the resource at {prefix}"
                )
            node = child

    # running calls -------------------------------------------------------

    def run(
        self, method: core.Method, call: core.Call, conn: Any, blocking: bool
    ) -> Deferred:
        """Run one call where its handler belongs; a L{Deferred} of the result."""
        params = call.params
        if type(params) is list:
            args, kwargs = params, {}
        else:
            args, kwargs = (), params or {}
        if method.magic is not None:
            kwargs = dict(kwargs)
            if method.handler.run_in == "process":
                kwargs[method.magic] = conn.snapshot()
            else:
                kwargs[method.magic] = conn
        if self.locks.active() and self.locks.locked(method.key):
            d = self._until_unlocked(method.key)
            d.addCallback(
                lambda _: self._invoke(method.handler, args, kwargs, blocking)
            )
            return d
        return self._invoke(method.handler, args, kwargs, blocking)

    def _invoke(
        self, handler: Any, args: Any, kwargs: Dict[str, Any], blocking: bool
    ) -> Deferred:
        offloader = self.bridge.offloader
        if blocking:
            return self.blocking_lock.run(offloader.call, handler, *args, **kwargs)
        return offloader.call(handler, *args, **kwargs)

    def _until_unlocked(self, key: Any) -> Deferred:
        def cancel(d: Deferred) -> None:
            self._waiters[:] = [w for w in self._waiters if w[1] is not d]

        d: Deferred = Deferred(cancel)
        self._waiters.append((key, d))
        return d

    def _release_waiters(self) -> None:
        if not threadable.isInIOThread():
            self.reactor.callFromThread(self._release_waiters)
            return
        ready = [w for w in self._waiters if not self.locks.locked(w[0])]
        if not ready:
            return
        self._waiters[:] = [w for w in self._waiters if self.locks.locked(w[0])]
        for _, d in ready:
            d.callback(None)

    # flaskJSONRPCServer's runtime API -------------------------------------

    def lock(self, dispatcher: Any = None) -> None:
        """Lock every method, or one function: its calls wait (they are not refused)."""
        self.locks.lock(dispatcher)

    def unlock(self, dispatcher: Any = None, exclusive: bool = False) -> None:
        """
        Unlock every method, or one function; C{exclusive=True} lets that
        function run even while everything is locked.
        """
        self.locks.unlock(dispatcher, exclusive)
        self._release_waiters()

    def wait(
        self,
        dispatcher: Any = None,
        sleepMethod: Optional[Callable[[float], Any]] = None,
        returnStatus: bool = False,
    ) -> Any:
        """
        With C{returnStatus}: whether the server (or C{dispatcher}) is
        locked.  Otherwise wait until it is unlocked: in the reactor thread
        this returns a L{Deferred}; in any other thread it blocks.
        """
        key = None if dispatcher is None else core.lock_key(dispatcher)
        if returnStatus:
            return self.locks.locked(key)
        if threadable.isInIOThread():
            if not self.locks.locked(key):
                return defer.succeed(None)
            return self._until_unlocked(key)
        if self.reactor.running and sleepMethod is None:
            from twisted.internet.threads import blockingCallFromThread

            def wait_in_reactor() -> Deferred:
                if not self.locks.locked(key):
                    return defer.succeed(None)
                return self._until_unlocked(key)

            blockingCallFromThread(self.reactor, wait_in_reactor)
            return None
        sleep = sleepMethod or time.sleep
        while self.locks.locked(key):
            sleep(0.05)
        return None

    def stats(self, inMS: bool = False) -> Dict[str, Any]:
        """Per-method call counts and timings (seconds, or milliseconds with C{inMS})."""
        return self.stats_data.snapshot(inMS)

    def callAsync(
        self,
        target: Callable[..., Any],
        args: Any = None,
        kwargs: Optional[Dict[str, Any]] = None,
        sleepTime: float = 0.3,
        sleepMethod: Any = None,
        returnChecker: bool = False,
        wait: bool = True,
        cb: Optional[Callable[..., Any]] = None,
        cbData: Any = None,
        **ignored: Any,
    ) -> Any:
        """
        Run C{target(*args, **kwargs)} in a thread of its own.

        From a method running in a thread: blocks until it is done and
        returns its result (or raises its exception).  From the reactor
        thread: returns a L{Deferred}.  C{returnChecker=True} returns a
        function answering C{(done, result, error)}; C{wait=False} runs it in
        the background.  C{cb(result, error, cbData)} runs when it is done.
        """
        args = list(args or [])
        kwargs = dict(kwargs or {})
        state: Dict[str, Any] = {"done": False, "result": None, "error": None}
        done = threading.Event()
        d: Optional[Deferred] = None
        in_reactor = threadable.isInIOThread()
        if in_reactor and wait and not returnChecker:
            d = Deferred()

        def run() -> None:
            try:
                state["result"] = target(*args, **kwargs)
            except Exception as e:
                state["error"] = e
                if not (wait or returnChecker or cb):
                    log.failure("callAsync target {target!r} raised", target=target)
            if cb is not None:
                try:
                    cb(state["result"], state["error"], cbData)
                except Exception:
                    log.failure("callAsync callback raised")
            state["done"] = True
            done.set()
            if d is not None:
                if state["error"] is not None:
                    self.reactor.callFromThread(d.errback, Failure(state["error"]))
                else:
                    self.reactor.callFromThread(d.callback, state["result"])

        threading.Thread(target=run, name="twistbridge-callAsync", daemon=True).start()
        if returnChecker:

            def checker() -> tuple:
                if not state["done"]:
                    return False, None, None
                return True, state["result"], state["error"]

            return checker
        if not wait:
            return None
        if d is not None:
            return d
        done.wait()
        if state["error"] is not None:
            raise state["error"]
        return state["result"]

    def reload(
        self,
        api: Any,
        clearOld: bool = False,
        timeout: float = 60,
        processingDispatcherCountMax: int = 0,
        safely: bool = True,
    ) -> bool:
        """
        Replace methods without stopping (flaskJSONRPCServer's C{reload}).

        C{api} is a dict or a list of dicts with C{dispatcher} (a function,
        an instance, or the name of one in the module loaded from
        C{scriptPath} or imported as C{module}), C{name}, C{isInstance},
        C{overload} (a dict of module attributes to set, or
        C{f(server, module, dispatcher)}), C{path}, and optionally C{run_in}
        and C{fallback}.  Calls already running finish with the old code;
        the next calls use the new.  C{clearOld} drops every other method
        first.  With C{safely} a failure is logged and nothing changes
        (returns C{False}); otherwise it raises.
        """
        entries = api if isinstance(api, (list, tuple)) else [api]
        try:
            new: List[RpcMethod] = []
            for o in entries:
                new.extend(self._load(o))
        except Exception:
            if not safely:
                raise
            log.failure("JSON-RPC reload failed; the methods are unchanged")
            return False
        with self._mutex:
            replaced = {(m.path, m.name) for m in new}
            keep = [] if clearOld else self.bridge.rpc_methods
            self.bridge.rpc_methods = [
                m for m in keep if (m.path, m.name) not in replaced
            ] + new
            self.bridge.rpc_version += 1
        log.info(
            "JSON-RPC reloaded {names}",
            names=", ".join(sorted(f"{p} {n}" for p, n in replaced)),
        )
        return True

    def _load(self, o: Dict[str, Any]) -> List[RpcMethod]:
        if not isinstance(o, dict):
            raise TypeError(f"reload entries are dicts, not {type(o).__name__}")
        dispatcher = o.get("dispatcher")
        path = o.get("path") or self.default_path
        name = o.get("name") or o.get("dispatcherName")
        run_in = o.get("run_in")
        jsonp = o.get("fallback")
        module = None
        if isinstance(dispatcher, str):
            module = self._load_module(o)
            if not hasattr(module, dispatcher):
                raise AttributeError(f"{module.__name__} has no {dispatcher!r}")
            obj = getattr(module, dispatcher)
            if o.get("isInstance") and isinstance(obj, type):
                obj = obj()
            name = name or (None if o.get("isInstance") else dispatcher)
        elif dispatcher is not None:
            obj = dispatcher
        else:
            raise ValueError("a reload entry needs a 'dispatcher'")
        overloads = o.get("overload")
        for over in overloads if isinstance(overloads, (list, tuple)) else [overloads]:
            if not over:
                continue
            if isinstance(over, dict):
                target = module if module is not None else obj
                for k, v in over.items():
                    setattr(target, k, v)
            elif callable(over):
                over(self.server, module, obj)
        if o.get("isInstance"):
            out: List[RpcMethod] = []
            for attr in dir(obj):
                member = getattr(obj, attr)
                if not attr.startswith("_") and callable(member):
                    out.extend(rpc_entries(member, path, attr, run_in, jsonp))
            return out
        return rpc_entries(obj, path, name, run_in, jsonp)

    @staticmethod
    def _load_module(o: Dict[str, Any]) -> Any:
        if o.get("module"):
            module = importlib.import_module(o["module"])
            return importlib.reload(module)
        script = o.get("scriptPath")
        if not script:
            raise ValueError("reloading by name needs 'scriptPath' or 'module'")
        base = os.path.splitext(os.path.basename(script))[0]
        spec = importlib.util.spec_from_file_location(
            f"_twistbridge_reload_{base}_{next(_reload_ids)}", script
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {script}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


class RpcResource(Resource):
    """
    The JSON-RPC endpoint of one path; its children are nested paths, and
    C{GET <path>/<method>} is the JSONP fallback.
    """

    def __init__(self, ctl: RpcController, path: str) -> None:
        Resource.__init__(self)
        self.controller = ctl
        self.path = normalize_path(path)

    def max_body_size(self, request: Any) -> Optional[int]:
        """The request body limit: the bridge's C{max_request_size}."""
        return self.controller.bridge.settings.max_request_size

    def body_consumer(self, request: Any) -> Optional[FormBody]:
        """
        Take a body sent as a form ourselves (see L{twistbridge.web}): Twisted
        would otherwise split it into C{request.args} in the reactor, however
        many fields it holds, before this resource even sees it.
        """
        ctype = request.requestHeaders.getRawHeaders(b"content-type")
        if ctype is None:
            return None
        value = ctype[0]
        form = _is_form.get(value)
        if form is None:
            form = value.split(b";", 1)[0].strip().lower() in _FORM_TYPES
            if len(_is_form) < 256:
                _is_form[value] = form
        return FormBody() if form else None

    def getChildWithDefault(self, name: bytes, request: Any) -> Resource:
        """Mount paths registered since the last request, then find the child."""
        ctl = self.controller
        if ctl.bridge.rpc_version != ctl._version:
            ctl.paths()
        return Resource.getChildWithDefault(self, name, request)

    def getChild(self, name: bytes, request: Any) -> Resource:
        """C{""} is this path itself; any other name is a JSONP method."""
        if name == b"":
            return self
        return JsonpResource(self, name)

    def render(self, request: Any) -> Any:
        """Dispatch on the HTTP method."""
        disp = self.controller.dispatcher(self.path)
        if disp is None:
            return _plain_error(
                request, http.NOT_FOUND, "no JSON-RPC methods at this path"
            )
        method = request.method
        if method == b"POST":
            return self.render_rpc(request, disp)
        if method == b"OPTIONS":
            return _preflight(request, disp.options)
        request.setHeader(b"Allow", b"POST, OPTIONS")
        return _plain_error(
            request,
            http.NOT_ALLOWED,
            "JSON-RPC calls are POST requests (JSONP: GET <path>/<method>)",
        )

    def render_rpc(self, request: Any, disp: core.Dispatcher) -> Any:
        """Answer a POSTed JSON-RPC request."""
        opts = disp.options
        ctype = request.getHeader(b"content-type")
        if ctype is not None and not _content_types.get(
            (ctype, opts.allow_form_content)
        ):
            if not acceptable_content_type(ctype, opts.allow_form_content):
                log.info(
                    "JSON-RPC request from {peer} with Content-Type {ctype}",
                    peer=_peer(request),
                    ctype=ctype,
                )
                return _plain_error(
                    request,
                    http.UNSUPPORTED_MEDIA_TYPE,
                    "JSON-RPC bodies are application/json",
                )
        body = read_body(request, self.controller.bridge.settings.max_request_size)
        if body is None:
            log.info(
                "JSON-RPC request from {peer} over max_request_size",
                peer=_peer(request),
            )
            request.setHeader(b"Connection", b"close")
            return _plain_error(
                request, http.REQUEST_ENTITY_TOO_LARGE, "request body too large"
            )
        stats = self.controller.stats_data
        stats.requests += 1
        if len(body) >= core.INLINE_PARSE:
            return self._parse_in_thread(request, disp, body)
        return self.answer(request, disp, core.parse(body, opts.max_batch_size))

    def _parse_in_thread(self, request: Any, disp: core.Dispatcher, body: bytes) -> Any:
        """Parse a large body in the thread pool, then answer it."""
        d = self.controller.bridge.offloader.in_thread(
            core.parse_large, body, disp.options.max_batch_size
        )
        del body
        request.notifyFinish().addErrback(lambda _: d.cancel())

        def parsed(result: Any) -> None:
            if request.finished or getattr(request, "_disconnected", False):
                return
            answer = self.answer(request, disp, result)
            if answer is not NOT_DONE_YET:
                request.write(answer)
                request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(CancelledError):
                return
            if request.finished or getattr(request, "_disconnected", False):
                return
            if failure.check(OffloadError):
                log.warn(
                    "JSON-RPC from {peer}: cannot parse the body: {why}",
                    peer=_peer(request),
                    why=failure.getErrorMessage(),
                )
                error = core.Error(core.SERVER_ERROR, "Server busy, try again")
            else:
                log.failure("JSON-RPC: parsing a body failed", failure)
                error = core.internal_error()
            request.write(_respond(request, disp.options, core.encode_error(error), None))
            request.finish()

        d.addCallbacks(parsed, failed)
        d.addErrback(lambda f: log.failure("JSON-RPC: answering a body failed", f))
        return NOT_DONE_YET

    def answer(self, request: Any, disp: core.Dispatcher, parsed: Any) -> Any:
        """Answer a parsed body: the response bytes, or C{NOT_DONE_YET}."""
        opts = disp.options
        if type(parsed) is core.Error:
            log.info(
                "JSON-RPC request from {peer}: {message} ({detail})",
                peer=_peer(request),
                message=parsed.message,
                detail=parsed.data,
            )
            return _respond(request, opts, core.encode_error(parsed), None)
        if not parsed.batch and opts.auth is None:
            call = parsed.items[0]
            if type(call) is core.Call and not call.notification:
                method = disp.methods.get(call.method)
                if (
                    method is not None
                    and method.magic is None
                    and method.binder.check(call.params) is None
                ):
                    return self.render_one(request, disp, call, method)
        return _Exchange(self.controller, request, disp, parsed).start()

    def render_one(
        self, request: Any, disp: core.Dispatcher, call: core.Call, method: core.Method
    ) -> Any:
        """The fast path: one valid call that needs no connection object."""
        ctl = self.controller
        stats = ctl.stats_data
        stats.processing += 1
        opts = disp.options
        t0 = _perf()
        if opts.blocking or ctl.locks.active():
            d = ctl.run(method, call, None, opts.blocking)
        else:
            params = call.params
            if type(params) is list:
                d = ctl.bridge.offloader.call(method.handler, *params)
            elif params:
                d = ctl.bridge.offloader.call(method.handler, **params)
            else:
                d = ctl.bridge.offloader.call(method.handler)
        box: List[Any] = []
        later: List[_Exchange] = []

        def deliver(result: Any) -> None:
            if later:
                later[0].deliver(result, 0, call, method, t0)
            else:
                box.append(result)

        d.addBoth(deliver)
        if not box:
            exchange = _Exchange(ctl, request, disp, core.Parsed(False, [call]))
            exchange.pending = 1
            exchange.deferreds[0] = d
            exchange.waiting = True
            later.append(exchange)
            request.notifyFinish().addErrback(exchange.gone)
            return NOT_DONE_YET
        result = box[0]
        stats.processing -= 1
        if isinstance(result, Failure):
            stats.record(disp.path, call.method, _perf() - t0, False)
            _log_failure(result, call, disp)
            payload = core.encode_error(
                core.method_error(result.value), call.id, call.version
            )
        else:
            stats.record(disp.path, call.method, _perf() - t0, True)
            payload = _encode_result(call, result)
        if not opts.cors and opts.compress_min_size is None:
            request.setHeader(b"Content-Type", _JSON)
            return payload
        return _respond(request, opts, payload, None)


class _Exchange:
    """The calls of one HTTP request, from parsing to the written answer."""

    __slots__ = (
        "ctl",
        "request",
        "disp",
        "parsed",
        "parts",
        "pending",
        "deferreds",
        "conn",
        "waiting",
        "status",
    )

    def __init__(
        self,
        ctl: RpcController,
        request: Any,
        disp: core.Dispatcher,
        parsed: core.Parsed,
    ):
        self.ctl = ctl
        self.request = request
        self.disp = disp
        self.parsed = parsed
        self.parts: List[Optional[bytes]] = [None] * len(parsed.items)
        self.pending = 0
        self.deferreds: Dict[int, Deferred] = {}
        self.conn: Any = None
        self.waiting = False
        self.status: Optional[int] = None

    def builtin(self, name: str) -> Any:
        """The answer of a built-in method (listing, OpenRPC description)."""
        if name == core.DISCOVER:
            from twistbridge import __version__

            return self.disp.openrpc(__version__)
        return self.disp.list_methods()

    def connection(self) -> core.Connection:
        if self.conn is None:
            self.conn = _connection(self.request, self.ctl, self.disp)
        return self.conn

    def start(self) -> Any:
        disp = self.disp
        opts = disp.options
        methods = disp.methods
        parts = self.parts
        denied = 0
        for i, item in enumerate(self.parsed.items):
            if type(item) is core.Invalid:
                parts[i] = core.encode_error(item.error, item.id, item.version)
                continue
            call: core.Call = item  # type: ignore[assignment]
            # auth comes first: a refused client learns nothing of the method
            # names (-32601) or signatures (-32602).
            if opts.auth is not None and not self.allowed(call):
                denied += 1
                self.fail(i, call, core.forbidden())
                continue
            method = methods.get(call.method)
            if method is None:
                if call.method in core.BUILTIN_METHODS:
                    if not call.notification:
                        parts[i] = core.encode_result(call, self.builtin(call.method))
                    continue
                log.info(
                    "JSON-RPC from {peer}: method {method!r} not found at {path}",
                    peer=_peer(self.request),
                    method=call.method,
                    path=disp.path,
                )
                self.fail(i, call, core.method_not_found(call.method))
                continue
            why = method.binder.check(call.params)
            if why is not None:
                self.fail(i, call, core.invalid_params(why))
                continue
            conn = None
            if method.magic is not None:
                conn = self.connection()
                if self.parsed.batch:
                    conn = conn.for_call()
                conn["method"] = call.method
                conn["notify"] = call.notification
                conn["_call"] = call
            self.ctl.stats_data.processing += 1
            t0 = _perf()
            d = self.ctl.run(method, call, conn, opts.blocking)
            if call.notification:
                # Nobody waits for a notification: the answer does not wait
                # for it either, and a client leaving does not cancel it.
                d.addBoth(self.notified, call, t0)
            else:
                self.attach(i, call, method, d, t0)
        if denied and not self.parsed.batch:
            self.status = http.FORBIDDEN
        if self.pending == 0:
            return self.body()
        self.waiting = True
        self.request.notifyFinish().addErrback(self.gone)
        return NOT_DONE_YET

    def attach(
        self, i: int, call: core.Call, method: core.Method, d: Deferred, t0: float
    ) -> None:
        self.pending += 1
        self.deferreds[i] = d
        d.addBoth(self.deliver, i, call, method, t0)

    def deliver(
        self, result: Any, i: int, call: core.Call, method: core.Method, t0: float
    ) -> None:
        if isinstance(result, Failure):
            self.failed(result, i, call, method, t0)
        else:
            self.settled(result, i, call, method, t0)

    def notified(self, result: Any, call: core.Call, t0: float) -> None:
        stats = self.ctl.stats_data
        stats.processing -= 1
        failed = isinstance(result, Failure)
        stats.record(self.disp.path, call.method, _perf() - t0, not failed)
        if failed:
            _log_failure(result, call, self.disp)

    def allowed(self, call: core.Call) -> bool:
        try:
            ok = self.disp.options.auth(self.connection(), call.method) is True
        except Exception:
            log.failure("JSON-RPC auth function raised; the call is refused")
            return False
        if not ok:
            log.info(
                "JSON-RPC from {peer}: auth refused {method!r}",
                peer=_peer(self.request),
                method=call.method,
            )
        return ok

    def fail(self, i: int, call: core.Call, error: core.Error) -> None:
        if not call.notification:
            self.parts[i] = core.encode_error(error, call.id, call.version)

    def settled(
        self, result: Any, i: int, call: core.Call, method: core.Method, t0: float
    ) -> None:
        self.ctl.stats_data.record(self.disp.path, call.method, _perf() - t0, True)
        if not call.notification:
            self.parts[i] = _encode_result(call, result)
        self.done(i)

    def failed(
        self, failure: Failure, i: int, call: core.Call, method: core.Method, t0: float
    ) -> None:
        self.ctl.stats_data.record(self.disp.path, call.method, _perf() - t0, False)
        if failure.check(CancelledError) and not self.waiting:
            pass
        elif failure.check(CancelledError):
            log.info(
                "JSON-RPC call {method!r} cancelled: the client left",
                method=call.method,
            )
        else:
            log.failure(
                "JSON-RPC method {method!r} at {path} raised",
                failure,
                method=call.method,
                path=self.disp.path,
            )
        if not call.notification:
            self.parts[i] = core.encode_error(
                core.method_error(failure.value), call.id, call.version
            )
        self.done(i)

    def done(self, i: int) -> None:
        self.deferreds.pop(i, None)
        self.ctl.stats_data.processing -= 1
        self.pending -= 1
        if self.pending == 0 and self.waiting:
            self.waiting = False
            if getattr(self.request, "_disconnected", False) or self.request.finished:
                return
            body = self.body()
            if body:
                self.request.write(body)
            self.request.finish()

    def gone(self, reason: Failure) -> None:
        if not self.waiting:
            return
        self.waiting = False
        for d in list(self.deferreds.values()):
            d.cancel()

    def body(self) -> bytes:
        payload = core.join(self.parts, self.parsed.batch)
        return _respond(
            self.request, self.disp.options, payload, self.conn, self.status
        )


def _encode_result(call: core.Call, result: Any) -> bytes:
    try:
        return core.encode_result(call, result)
    except (TypeError, ValueError) as e:
        log.error(
            "JSON-RPC method {method!r} returned something that is not JSON: {error}",
            method=call.method,
            error=e,
        )
        return core.encode_error(
            core.internal_error(not_json_text(result)), call.id, call.version
        )


def _log_failure(failure: Failure, call: core.Call, disp: core.Dispatcher) -> None:
    if failure.check(CancelledError):
        log.info(
            "JSON-RPC call {method!r} cancelled: the client left", method=call.method
        )
    else:
        log.failure(
            "JSON-RPC method {method!r} at {path} raised",
            failure,
            method=call.method,
            path=disp.path,
        )


def _connection(
    request: Any, ctl: RpcController, disp: core.Dispatcher, jsonp: Any = False
) -> core.Connection:
    headers = {
        k.decode("latin-1"): b", ".join(v).decode("latin-1")
        for k, v in request.requestHeaders.getAllRawHeaders()
    }
    cookies = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in (request.received_cookies or {}).items()
    }
    opts = disp.options
    return core.new_connection(
        _peer(request),
        headers,
        cookies,
        disp.path,
        ctl.server,
        opts.compress_min_size is not None,
        jsonp,
    )


def _peer(request: Any) -> str:
    try:
        return str(request.getClientAddress().host)
    except Exception:
        return "?"


def _respond(
    request: Any,
    opts: core.PathOptions,
    payload: Optional[bytes],
    conn: Any,
    status: Optional[int] = None,
    content_type: bytes = _JSON,
) -> bytes:
    """Set the headers of an answer and return its body (b"" for 204)."""
    if opts.cors:
        _set_cors(request, opts)
    forced = None
    if conn is not None:
        for name, value in conn["headersOut"].items():
            try:
                request.setHeader(
                    str(name).encode("latin-1"), str(value).encode("latin-1")
                )
            except (UnicodeEncodeError, ValueError) as e:
                log.warn("ignored headersOut {name!r}: {e}", name=name, e=e)
        for cookie in conn["cookiesOut"]:
            _add_cookie(request, cookie)
        forced = conn.get("_compressChoice")
    if payload is None:
        request.setResponseCode(http.NO_CONTENT)
        return b""
    if status is not None:
        request.setResponseCode(status)
    if conn is None or not request.responseHeaders.hasHeader(b"content-type"):
        request.setHeader(b"Content-Type", content_type)
    if forced is not None or opts.compress_min_size is not None:
        accept = request.getHeader(b"accept-encoding")
        if core.should_compress(
            accept.decode("latin-1") if accept else None,
            len(payload),
            opts.compress_min_size,
            forced,
        ):
            payload = gzip.compress(payload, 6)
            request.setHeader(b"Content-Encoding", b"gzip")
        request.setHeader(b"Vary", b"Accept-Encoding")
    return payload


def _add_cookie(request: Any, cookie: Any) -> None:
    if not isinstance(cookie, dict) or "name" not in cookie or "value" not in cookie:
        log.warn("ignored a cookiesOut entry without name and value: {c!r}", c=cookie)
        return
    kwargs: Dict[str, Any] = {"path": cookie.get("path", "/")}
    for key, arg in (
        ("expires", "expires"),
        ("domain", "domain"),
        ("max_age", "max_age"),
        ("maxAge", "max_age"),
        ("comment", "comment"),
        ("secure", "secure"),
        ("httponly", "httpOnly"),
        ("httpOnly", "httpOnly"),
        ("samesite", "sameSite"),
        ("sameSite", "sameSite"),
    ):
        if cookie.get(key) is not None:
            kwargs[arg] = cookie[key]
    if isinstance(kwargs.get("expires"), (int, float)):
        kwargs["expires"] = http.datetimeToString(kwargs["expires"])
    try:
        request.addCookie(str(cookie["name"]), str(cookie["value"]), **kwargs)
    except Exception as e:
        log.warn("ignored a bad cookiesOut entry {c!r}: {e}", c=cookie, e=e)


def _set_cors(request: Any, opts: core.PathOptions) -> None:
    origin = request.getHeader(b"origin")
    for name, value in core.cors_headers(
        opts.cors, origin.decode("latin-1") if origin else None
    ):
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))


def _preflight(request: Any, opts: core.PathOptions) -> bytes:
    request.setResponseCode(http.NO_CONTENT)
    request.setHeader(
        b"Allow", b"GET, POST, OPTIONS" if opts.jsonp else b"POST, OPTIONS"
    )
    if opts.cors:
        _set_cors(request, opts)
    return b""


def _plain_error(request: Any, code: int, message: str) -> bytes:
    """An HTTP-level error (404, 405, 413, 415, ...) as a JSON body."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", _JSON)
    return core.dumps({"error": message, "code": code}).encode()


class JsonpResource(Resource):
    """
    C{GET <path>/<method>?<param>=<value>&jsonp=<callback>}: the JSONP
    fallback, answering C{callback(<result>);} as JavaScript.
    """

    isLeaf = True
    body_refusal_code = http.NOT_FOUND  # a body here: 404 unread (twistbridge.web)

    def __init__(self, parent: RpcResource, name: bytes) -> None:
        Resource.__init__(self)
        self.parent = parent
        self.name = name

    def render(self, request: Any) -> Any:
        """Answer a JSONP call (GET), a preflight (OPTIONS), or 404/405."""
        ctl = self.parent.controller
        disp = ctl.dispatcher(self.parent.path)
        if disp is None or request.postpath:
            return _plain_error(request, http.NOT_FOUND, "no such JSON-RPC path")
        opts = disp.options
        if request.method == b"OPTIONS":
            return _preflight(request, opts)
        if request.method not in (b"GET", b"HEAD"):
            return _plain_error(
                request, http.NOT_FOUND, f"not found (JSON-RPC calls go to {disp.path})"
            )
        try:
            name = self.name.decode("utf-8")
            callback, params = core.jsonp_params(request.args)
        except UnicodeDecodeError:
            return _plain_error(request, http.BAD_REQUEST, "query string is not UTF-8")
        if callback is not None and not core.valid_callback(callback):
            return _plain_error(
                request, http.BAD_REQUEST, "jsonp must be a JavaScript name"
            )
        method = disp.methods.get(name)
        enabled = opts.jsonp if method is None or method.jsonp is None else method.jsonp
        if not enabled:
            log.info("JSONP refused for {path}/{name}", path=disp.path, name=name)
            return _plain_error(request, http.FORBIDDEN, "JSONP is not enabled here")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        ctype = b"application/javascript" if callback else _JSON
        call = core.Call(name, params, None, False)

        def answer(payload: Any, conn: Any = None) -> bytes:
            return _respond(
                request, opts, core.jsonp_body(callback, payload), conn, None, ctype
            )

        def error(err: core.Error) -> bytes:
            return answer(core.dumps({"error": err.to_dict()}).encode())

        if opts.auth is not None:
            # Before the method is looked up: a client the auth function
            # refuses learns nothing of the method names or signatures.
            conn = _connection(request, ctl, disp, callback or False)
            conn["method"] = name
            conn["_call"] = call
            try:
                ok = opts.auth(conn, name) is True
            except Exception:
                log.failure("JSON-RPC auth function raised; the call is refused")
                ok = False
            if not ok:
                request.setResponseCode(http.FORBIDDEN)
                return error(core.forbidden())
        if method is None and name not in core.BUILTIN_METHODS:
            return error(core.method_not_found(name))
        if "_" in params and (method is None or "_" not in method.binder.names):
            del params["_"]  # jQuery's cache buster
        if method is not None:
            why = method.binder.check(params)
            if why is not None:
                return error(core.invalid_params(why))
        if opts.auth is None:
            conn = _connection(request, ctl, disp, callback or False)
            conn["method"] = name
            conn["_call"] = call
        if method is None:
            if name == core.DISCOVER:
                from twistbridge import __version__

                return answer(core.dumps(disp.openrpc(__version__)).encode())
            return answer(core.dumps(disp.list_methods()).encode())
        t0 = _perf()
        ctl.stats_data.processing += 1
        d = ctl.run(method, call, conn, opts.blocking)
        state = {"sync": True, "body": None}

        def ok(result: Any) -> None:
            ctl.stats_data.record(disp.path, name, _perf() - t0, True)
            try:
                payload = core.dumps(result).encode()
            except (TypeError, ValueError):
                payload = core.dumps(
                    {"error": core.internal_error().to_dict()}
                ).encode()
            finish(answer(payload, conn if method.magic else None))

        def bad(failure: Failure) -> None:
            ctl.stats_data.record(disp.path, name, _perf() - t0, False)
            if not failure.check(CancelledError):
                log.failure(
                    "JSON-RPC method {method!r} raised (JSONP)", failure, method=name
                )
            finish(error(core.method_error(failure.value)))

        def finish(body: bytes) -> None:
            ctl.stats_data.processing -= 1
            if state["sync"]:
                state["body"] = body
                return
            if getattr(request, "_disconnected", False) or request.finished:
                return
            request.write(body)
            request.finish()

        d.addCallbacks(ok, bad)
        state["sync"] = False
        if state["body"] is not None:
            return state["body"]
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET
