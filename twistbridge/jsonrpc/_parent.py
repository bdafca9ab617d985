"""
The main process's side of the link of flaskJSONRPCServer's process-pool
methods (L{twistbridge.jsonrpc._worker}): what their C{_connection.call}
and C{_connection.server} ask, answered here.

C{eval}, C{execute} and C{copyGlobal} run in the bridge's thread pool
(the code they run may block, as flaskJSONRPCServer's example's does),
against the globals of the main program; C{log}, C{lock}, C{unlock},
C{wait} and C{stats} in the reactor thread.  Requests come only from the
workers of this server's own process pool, on their pipes (see
L{twistbridge._processpool}); they are JSON, bounded by the pool.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any, Callable, Dict, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred

from twistbridge.jsonrpc._state import lock_key
from twistbridge.jsonrpc._worker import MainError

__all__ = ["WorkerLink"]

#: The types C{execute} copies back into the main program's globals
#: (flaskJSONRPCServer's C{mergeGlobalsToParent_typeForEval}).
MERGED_TYPES = (int, float, complex, type(None), str, bytes, bool, tuple)
#: Requests up to this size are parsed in the reactor thread; larger ones
#: in a pool thread.
INLINE_MAX = 64 * 1024
#: The types C{copyGlobal} copies (its C{importGlobalsFromParent_typeForVarCheck}).
COPIED_TYPES = (int, float, complex, type(None), str, bytes, bool, dict, list, tuple)


class WorkerLink:
    """
    Answers the requests of one C{JSONRPCServer}'s process-pool methods.

    @ivar name: the name the pool knows this handler by.
    """

    def __init__(self, server: Any, name: str) -> None:
        self.server = server
        self.name = name

    def __call__(self, body: bytes) -> Any:
        """One request: bytes of JSON in, a L{Deferred} of bytes of JSON out."""
        if len(body) > INLINE_MAX:
            # A large request is parsed in a pool thread, not the reactor's.
            d = self._in_thread(json.loads, body)
            d.addCallback(self._dispatch)
            return d
        try:
            request = json.loads(body)
        except Exception as e:
            return defer.fail(MainError(f"bad request from a worker process: {e}"))
        return self._dispatch(request)

    def _dispatch(self, request: Any) -> Deferred:
        try:
            op = request.pop("op")
            handler: Optional[Callable[..., Any]] = _OPS.get(op)
            if handler is None:
                raise MainError(f"unknown request {op!r} from a worker process")
            answer = handler(self, **request)
        except MainError:
            return defer.fail()
        except Exception as e:
            return defer.fail(MainError(f"bad request from a worker process: {e}"))
        if isinstance(answer, Deferred):
            return answer  # the pool thread encoded it
        try:
            return defer.succeed(self._encode(answer))
        except MainError:
            return defer.fail()

    def _encode(self, value: Any) -> bytes:
        try:
            return json.dumps(
                value, default=self.server._json_default, separators=(",", ":")
            ).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise MainError(f"Cant serialize JSON: {e}") from None

    def _in_thread(self, func: Callable[..., Any], *args: Any) -> Deferred:
        return self.server.rpc.offloader.in_thread(func, *args)

    def _encoded(self, func: Callable[..., Any], *args: Any) -> Deferred:
        """C{func(*args)} in a pool thread, its result encoded there too."""
        return self._in_thread(lambda: self._encode(func(*args)))

    def _module(self) -> Any:
        module = getattr(self.server, "_parentModule", None)
        return module if module is not None else sys.modules["__main__"]

    def _dispatcher(self, dispatcher: Any = None, this: Any = None) -> Any:
        if this is not None:
            disp = self.server.rpc.dispatcher(this["path"])
            method = disp.methods.get(this["method"]) if disp is not None else None
            if method is None:
                raise MainError(f"Wrong dispatcherId: {this}")
            return method.handler.func
        if dispatcher is None:
            return None
        module = dispatcher["module"]
        if module == "__mp_main__":
            module = "__main__"
        for path in self.server.rpc.paths():
            for method in self.server.rpc.dispatcher(path).methods.values():
                func = lock_key(method.handler.func)
                if (
                    getattr(func, "__module__", None) == module
                    and getattr(func, "__qualname__", None) == dispatcher["qualname"]
                ):
                    return method.handler.func
        raise MainError(f"Wrong dispatcherId: {dispatcher}")

    # the requests --------------------------------------------------------

    def eval(
        self,
        code: str,
        scope: Any = None,
        isExec: bool = False,
        mergeGlobals: Any = False,
    ) -> Deferred:
        """C{call.eval} / C{call.execute}: run C{code} here, in a pool thread."""
        return self._encoded(self._eval, code, scope, isExec, mergeGlobals)

    def _eval(self, code: str, scope: Any, is_exec: bool, merge: Any) -> Any:
        if not is_exec and merge:
            raise MainError("Merging globals work only with isExec=True")
        module = self._module()
        try:
            parent = dict(vars(module))
            if scope is None:
                scope = parent
            elif not scope:
                scope = {}
            elif not isinstance(scope, dict):
                merged: Dict[str, Any] = {}
                for part in scope if isinstance(scope, list) else [scope]:
                    if part is None:
                        merged.update(parent)
                    elif isinstance(part, dict):
                        merged.update(part)
                    elif isinstance(part, str):
                        merged[part] = parent.get(part)
                scope = merged
            scope["__server__"] = self.server
            compiled = compile(code, "<string>", "exec" if is_exec else "eval")
            result = eval(compiled, scope, scope)
            if merge:
                names = merge if isinstance(merge, list) else list(scope)
                for name in names:
                    value = scope.get(name)
                    if name != "__server__" and isinstance(value, MERGED_TYPES):
                        setattr(module, name, value)
        except Exception as e:
            raise MainError(f"Cant execute code: {e}") from None
        return result

    def varCheck(self, names: Dict[str, Optional[str]]) -> Deferred:
        """C{call.copyGlobal}: the main program's globals that changed, as JSON."""
        return self._encoded(self._var_check, names)

    def _var_check(self, names: Dict[str, Optional[str]]) -> Dict[str, Any]:
        module = self._module()
        answer: Dict[str, Any] = {}
        for name, known in names.items():
            value = getattr(module, name, None)
            if not hasattr(module, name) or not isinstance(value, COPIED_TYPES):
                answer[name] = [True, None, None]
                continue
            try:
                text = json.dumps(
                    value, default=self.server._json_default, separators=(",", ":")
                )
            except (TypeError, ValueError):
                self.server._logger(
                    1, f'ERROR: Cant hash variable "{name}({type(value)})"'
                )
                answer[name] = [True, None, None]
                continue
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            answer[name] = (
                [False, digest, None] if digest == known else [True, digest, text]
            )
        return answer

    def log(self, level: Any, text: str) -> None:
        """C{call.log}: the main server's log."""
        if level is None:
            self.server._logger(text)
        else:
            self.server._logger(level, text)

    def stats(self, inMS: bool = False) -> Any:
        """C{server.stats}."""
        return self.server.stats(inMS=inMS)

    def lock(self, dispatcher: Any = None, this: Any = None) -> None:
        """C{call.lock}, C{lockThis}, C{server.lock}."""
        self.server.lock(self._dispatcher(dispatcher, this))

    def unlock(
        self, dispatcher: Any = None, this: Any = None, exclusive: bool = False
    ) -> None:
        """C{call.unlock}, C{unlockThis}, C{server.unlock}."""
        self.server.unlock(self._dispatcher(dispatcher, this), exclusive)

    def wait(
        self,
        dispatcher: Any = None,
        this: Any = None,
        returnStatus: bool = False,
        poll: float = 10.0,
    ) -> Any:
        """
        C{call.wait}: with C{returnStatus}, whether it is locked; otherwise
        C{False} once it is unlocked, or C{True} when still locked after
        C{poll} seconds (the worker then asks again).
        """
        func = self._dispatcher(dispatcher, this)
        if returnStatus:
            return bool(self.server.wait(func, returnStatus=True))
        d = self.server.rpc.wait(func)
        if not isinstance(d, Deferred):
            return False
        d.addCallback(lambda _: False)
        d.addTimeout(
            min(float(poll), 60.0),
            self.server.rpc.reactor,
            onTimeoutCancel=lambda result, timeout: True,
        )
        d.addCallback(self._encode)
        return d

    def ipc(self, kind: str, **args: Any) -> Any:
        """An IPC flag operation of C{execBackend_parallelWithSocketNew} (never blocking here)."""
        if kind not in ("capture", "release", "get", "check", "clear"):
            raise MainError(f"unknown IPC flag operation {kind!r}")
        if kind in ("capture", "check"):
            args["block"] = False
        return getattr(self.server._ipc_flags, kind)(**args)


_OPS: Dict[str, Callable[..., Any]] = {
    "ipc": WorkerLink.ipc,
    "eval": WorkerLink.eval,
    "varCheck": WorkerLink.varCheck,
    "log": WorkerLink.log,
    "stats": WorkerLink.stats,
    "lock": WorkerLink.lock,
    "unlock": WorkerLink.unlock,
    "wait": WorkerLink.wait,
}
