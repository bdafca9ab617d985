"""
The JSON-RPC runtime of one bridge (L{RpcController}), shared by every path:
the dispatchers built from the registry (and the resources mounted for them),
running calls through the bridge's L{twistbridge.offload.Offloader} (one at a
time on C{blocking} paths), and flaskJSONRPCServer's runtime API:
C{lock}/C{unlock}/C{wait}, C{stats}, C{callAsync} and C{reload}.  Answering
HTTP requests is L{twistbridge.jsonrpc._resource}'s.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredLock
from twisted.python import threadable
from twisted.web.resource import Resource

from twistbridge.jsonrpc._core import Call
from twistbridge.jsonrpc._dispatch import Dispatcher, Method, PathOptions
from twistbridge.jsonrpc._http import log
from twistbridge.jsonrpc._registry import RpcMethod
from twistbridge.jsonrpc._reload import load_entry
from twistbridge.jsonrpc._resource import RpcResource
from twistbridge.jsonrpc._state import Locks, Stats, lock_key
from twistbridge.offload import Offloader
from twistbridge.registry import Registry


class RpcController:
    """
    The JSON-RPC runtime of one bridge.

    @ivar registry: the L{twistbridge.registry.Registry} served.
    @ivar offloader: the L{twistbridge.offload.Offloader} calls run through.
    @ivar defaults: options every path starts from (the compatibility class
        puts its constructor's options here).
    @ivar default_path: the path of C{reload} entries that name none.
    @ivar server: what C{_connection.server} is (this controller, or the
        compatibility server).
    @ivar locks: the C{lock}/C{unlock} state.
    @ivar stats_data: the L{Stats}.
    """

    def __init__(
        self, registry: Registry, offloader: Offloader, reactor: Any = None
    ) -> None:
        self._reactor = reactor
        self.registry = registry
        self.offloader = offloader
        self.defaults: Dict[str, Any] = {}
        self.default_path = "/rpc"
        self.server: Any = self
        self.locks = Locks()
        self.stats_data = Stats()
        self.blocking_lock = DeferredLock()
        self._mutex = threading.RLock()
        self._version = -1
        self._dispatchers: Dict[str, Dispatcher] = {}
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

    def dispatcher(self, path: str) -> Optional[Dispatcher]:
        """The L{Dispatcher} of C{path}, or L{None}."""
        if self.registry.rpc_version != self._version:
            self._rebuild()
        return self._dispatchers.get(path)

    def paths(self) -> List[str]:
        """Every path with a dispatcher."""
        if self.registry.rpc_version != self._version:
            self._rebuild()
        return sorted(self._dispatchers)

    def _rebuild(self) -> None:
        with self._mutex:
            version = self.registry.rpc_version
            methods: List[RpcMethod] = list(self.registry.rpc_methods)
            options = dict(self.registry.rpc_options)
            paths = {m.path for m in methods} | set(options) | {self.default_path}
            dispatchers: Dict[str, Dispatcher] = {}
            for path in paths:
                opts = PathOptions.from_dict({**self.defaults, **options.get(path, {})})
                dispatchers[path] = Dispatcher(path, {}, opts)
            for m in methods:
                d = dispatchers[m.path]
                d.methods[m.name] = Method(
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

    def run(self, method: Method, call: Call, conn: Any, blocking: bool) -> Deferred:
        """Run one call where its handler belongs; a L{Deferred} of the result."""
        params = call.params
        args: Sequence[Any]
        kwargs: Dict[str, Any]
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
        offloader = self.offloader
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
        key = None if dispatcher is None else lock_key(dispatcher)
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

        def outcome(_: Any = None) -> Any:
            if state["error"] is not None:
                raise state["error"]
            return state["result"]

        in_reactor = threadable.isInIOThread()
        if wait and not returnChecker and not in_reactor:
            # The calling thread would only wait: run it there, rather than
            # hold a second pool thread (with every thread waiting so, the
            # pool could never run the calls they wait for).
            run()
            return outcome()

        def submit() -> Deferred:
            d = self.offloader.in_thread(run)
            d.addErrback(
                lambda f: log.failure(
                    "callAsync target {target!r} could not run", f, target=target
                )
            )
            return d

        if not in_reactor:
            self.reactor.callFromThread(submit)
            d = None
        else:
            d = submit()
        if returnChecker:

            def checker() -> tuple:
                if not state["done"]:
                    return False, None, None
                return True, state["result"], state["error"]

            return checker
        if not wait or d is None:
            return None
        return d.addCallback(outcome)

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
                new.extend(load_entry(o, self.default_path, self.server))
        except Exception:
            if not safely:
                raise
            log.failure("JSON-RPC reload failed; the methods are unchanged")
            return False
        with self._mutex:
            replaced = {(m.path, m.name) for m in new}
            keep = [] if clearOld else self.registry.rpc_methods
            self.registry.rpc_methods = [
                m for m in keep if (m.path, m.name) not in replaced
            ] + new
            self.registry.rpc_version += 1
        log.info(
            "JSON-RPC reloaded {names}",
            names=", ".join(sorted(f"{p} {n}" for p, n in replaced)),
        )
        return True
