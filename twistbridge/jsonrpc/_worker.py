"""
The C{_connection} of a flaskJSONRPCServer method running in the process
pool (C{dispatcherBackend='parallelWithSocket'}), as the original's
parallel backend gave it: a copy of the request's entries plus
C{parallelType}, C{parallelPoolSize}, C{parallelId}, and a C{call} and a
C{server} that reach back to the main process over the worker's link
(L{twistbridge._poolworker.upcall}): C{call.eval}, C{call.execute} and
C{call.copyGlobal} run there, as do C{call.log}, C{lock}, C{unlock},
C{wait} and C{server.stats}.

Pure: this module runs in the worker processes, which import no Twisted.
The main side is L{twistbridge.jsonrpc._parent}.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from twistbridge._poolworker import Snapshot, UpcallError, in_background, upcall

__all__ = [
    "MainError",
    "WorkerConnection",
    "flag_calls",
    "log_text",
    "worker_connection",
]

#: Seconds the main process keeps a C{wait} request before the worker asks again.
WAIT_POLL = 10.0


class MainError(Exception):
    """flaskJSONRPCServer's error for a misuse of the server's API."""


def log_text(args: Tuple[Any, ...]) -> str:
    """flaskJSONRPCServer's log line for these arguments: text as is, the rest as JSON."""
    parts = []
    for arg in args:
        if isinstance(arg, str):
            parts.append(arg)
        else:
            try:
                parts.append(json.dumps(arg, default=str))
            except (TypeError, ValueError):
                parts.append(repr(arg))
    return " ".join(parts)


def _dispatcher_id(dispatcher: Any) -> Optional[Dict[str, str]]:
    """How the main process finds a method's function: its module and name."""
    if dispatcher is None:
        return None
    func = getattr(dispatcher, "__func__", dispatcher)
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None)
    if not module or not name:
        raise MainError(f"Wrong dispatcherId: {dispatcher!r} is not a function")
    return {"module": module, "qualname": name}


class _Link:
    """The requests of one method's call to the main process."""

    def __init__(self, conn: WorkerConnection) -> None:
        self.conn = conn
        self.name: str = conn.__dict__["_link"]
        self.hashes: Dict[str, str] = {}
        self.values: Dict[str, Any] = {}

    def ask(self, op: str, **args: Any) -> Any:
        """Send one request; its result, or L{MainError} with the main process's message."""
        try:
            body = json.dumps({"op": op, **args}, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise MainError(f"Cant serialize JSON: {e}") from None
        try:
            answer = upcall(self.name, body.encode("utf-8"))
        except UpcallError as e:
            raise MainError(str(e)) from None
        return json.loads(answer)

    def later(
        self,
        ask: Callable[[], Any],
        wait: bool,
        cb: Optional[Callable[..., Any]],
        no_error: Any = None,
    ) -> Any:
        """
        flaskJSONRPCServer's C{wait}/C{cb} rules: C{wait=False} sends in the
        background (C{cb(result, error, _connection)} is called there when
        given); otherwise the answer is awaited, given to C{cb} when there
        is one, and returned (an error raised when there is no C{cb}).
        C{no_error} is the error C{cb} gets on success.
        """
        conn = self.conn

        def run() -> Any:
            try:
                result = ask()
            except Exception as e:
                if callable(cb):
                    cb(None, e, conn)
                    return None
                raise
            if callable(cb):
                cb(result, no_error, conn)
            return result

        if not wait:
            in_background(run if callable(cb) else lambda: _quiet(ask))
            return None
        return run()

    # copyGlobal ------------------------------------------------------------

    def copy_global(self, name: Any, actual: bool) -> Any:
        names: List[str] = list(name) if isinstance(name, (list, tuple)) else [name]
        if not actual:
            module = _main_module()
            found = {k: getattr(module, k, None) for k in names}
        else:
            checked = self.ask("varCheck", names={k: self.hashes.get(k) for k in names})
            found = {}
            for k in names:
                changed, digest, text = checked[k]
                if not changed:
                    found[k] = self.values.get(k)
                elif digest is None:  # not found, or not a plain value
                    found[k] = None
                    self.hashes.pop(k, None)
                    self.values.pop(k, None)
                else:
                    found[k] = self.values[k] = json.loads(text)
                    self.hashes[k] = digest
        if isinstance(name, (list, tuple)):
            return [found[k] for k in names]
        return found[names[0]]


def _quiet(ask: Callable[[], Any]) -> None:
    try:
        ask()
    except Exception:
        pass


def _main_module() -> Any:
    """The worker's copy of the main program (its globals as it imported them)."""
    import sys

    return sys.modules.get("__mp_main__") or sys.modules["__main__"]


def _locks(link: _Link, which: Dict[str, Any]) -> Tuple[Callable[..., Any], ...]:
    """C{lock}, C{unlock} and C{wait} of the main process's target C{which} names."""
    return (
        lambda: link.ask("lock", **which),
        lambda exclusive=False: link.ask("unlock", exclusive=exclusive, **which),
        lambda returnStatus=False: _wait(link, which, returnStatus),
    )


class _Calls(dict):
    """C{_connection.call} in a worker process."""

    def __init__(self, link: _Link) -> None:
        conn = link.conn
        this = {"path": conn.get("path"), "method": conn.get("method")}

        def of(dispatcher: Any) -> Tuple[Callable[..., Any], ...]:
            return _locks(link, {"dispatcher": _dispatcher_id(dispatcher)})

        lock_this, unlock_this, wait_this = _locks(link, {"this": this})
        super().__init__(
            eval=lambda code, scope=None, wait=True, cb=None: link.later(
                lambda: link.ask("eval", code=code, scope=scope), wait, cb
            ),
            execute=lambda code, scope=None, mergeGlobals=True, wait=True, cb=None: (
                link.later(
                    lambda: link.ask(
                        "eval",
                        code=code,
                        scope=scope,
                        isExec=True,
                        mergeGlobals=mergeGlobals,
                    ),
                    wait,
                    cb,
                )
            ),
            copyGlobal=lambda name, actual=True, cb=None: link.later(
                lambda: link.copy_global(name, actual), not callable(cb), cb, False
            ),
            log=lambda level, *args: _log(link, level, args),
            sleep=time.sleep,
            lock=lambda dispatcher=None: of(dispatcher)[0](),
            unlock=lambda dispatcher=None, exclusive=False: of(dispatcher)[1](
                exclusive
            ),
            wait=lambda dispatcher=None, returnStatus=False: of(dispatcher)[2](
                returnStatus
            ),
            lockThis=lock_this,
            unlockThis=unlock_this,
            waitThis=wait_this,
        )
        backend = conn.get("execBackend")
        if getattr(backend, "ipc", False):
            self.update(
                flag_calls(lambda op, **args: _ipc(link, op, args), in_background)
            )

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"_connection.call has no {name!r}: it offers {', '.join(sorted(self))}"
            ) from None


#: Seconds between two tries of a worker's blocking IPC flag call (as
#: flaskJSONRPCServer's C{sleepTime_IPCFlag}).
IPC_RETRY = 0.05


def _ipc(link: _Link, op: str, args: Dict[str, Any]) -> Any:
    """One IPC flag operation, kept in the main process; blocking ones retried here."""
    block = args.pop("block", True) and op in ("capture", "check")
    timeout = args.pop("timeout", None)
    if op in ("capture", "check"):
        args["block"] = False
    status = link.ask("ipc", kind=op, **args)
    if not block:
        return status
    deadline = None if not timeout else time.monotonic() + timeout
    while not status:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(IPC_RETRY)
        status = link.ask("ipc", kind=op, **args)
    return status


def _log(link: _Link, level: Any, args: Tuple[Any, ...]) -> None:
    if isinstance(level, bool) or not isinstance(level, int):
        args, level = (level, *args), None
    link.ask("log", level=level, text=log_text(args))


def _wait(link: _Link, which: Dict[str, Any], returnStatus: bool) -> Any:
    if returnStatus:
        return link.ask("wait", returnStatus=True, **which)
    while link.ask("wait", returnStatus=False, poll=WAIT_POLL, **which):
        pass  # still locked after a long poll: ask again
    return None


class _Server:
    """
    C{_connection.server} in a worker process: the main server's
    C{stats}, C{lock}, C{unlock} and C{wait} over the link, its small
    helpers here; any other method is not there, as with
    flaskJSONRPCServer's parallel backend.
    """

    def __init__(self, link: _Link, calls: _Calls) -> None:
        self._link = link
        self.lock = calls["lock"]
        self.unlock = calls["unlock"]
        self.wait = calls["wait"]
        self.stats = lambda inMS=False: link.ask("stats", inMS=inMS)
        self._logger = self._log = calls["log"]
        self._sleep = lambda s, forceNative=False: time.sleep(s)
        self._getms = lambda inMS=True: time.time() * 1000.0 if inMS else time.time()
        self._isString = lambda value: isinstance(value, (str, bytes))

    def _throw(self, data: str) -> None:
        raise MainError(data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def not_implemented(*args: Any, **kwargs: Any) -> None:
            raise MainError(f'Method "{name}" not implemented in parallel backend')

        return not_implemented


class WorkerConnection(Snapshot):
    """
    C{_connection} of a flaskJSONRPCServer method in a worker process:
    the request's entries (C{ip}, C{headers}, C{path}, C{method}, ...,
    C{parallelType}...) and, made on first use, C{call} and C{server}.
    """

    def __missing__(self, name: str) -> Any:
        if name not in ("call", "server"):
            raise KeyError(name)
        link = self.__dict__.get("_linked")
        if link is None:
            link = self.__dict__["_linked"] = _Link(self)
        calls = dict.get(self, "call")
        if calls is None:
            calls = _Calls(link)
            dict.__setitem__(self, "call", calls)
        if name == "call":
            return calls
        server = _Server(link, calls)
        dict.__setitem__(self, "server", server)
        return server

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"_connection has no {name!r} in a worker process: it has "
                f"{', '.join(sorted(set(self) | {'call', 'server'}))}"
            ) from None

    def __reduce__(self) -> Any:
        # The link, call and server stay in the worker.
        items = {k: v for k, v in self.items() if k not in ("call", "server")}
        return (_rebuild, (items, self.__dict__["_link"]))


def _rebuild(items: Dict[str, Any], link: str) -> WorkerConnection:
    conn = WorkerConnection(items)
    conn.__dict__["_link"] = link
    return conn


def worker_connection(items: Dict[str, Any], link: str) -> WorkerConnection:
    """A L{WorkerConnection} of these entries, reaching the main process's C{link}."""
    return _rebuild(items, link)


def flag_calls(
    run: Callable[..., Any], background: Callable[[Callable[[], Any]], Any]
) -> Dict[str, Callable[..., Any]]:
    """
    The C{IPCFlag*} entries of C{_connection.call}: C{run(op, **args)}
    does one operation; C{background(thunk)} runs one later (the
    C{...Async} forms, whose C{cb(result, error, lockId)} is called then).
    """

    def later(op: str, lockId: Any, cb: Any, **args: Any) -> None:
        def go() -> None:
            try:
                result = run(op, lockId=lockId, **args)
            except Exception as e:
                if callable(cb):
                    cb(None, e, lockId)
                return
            if callable(cb):
                cb(result, None, lockId)

        background(go)

    def by_id(op: str) -> Dict[str, Callable[..., Any]]:
        # the operations of a lockId alone, and their ...Async forms
        name = f"IPCFlag{op.capitalize()}"
        return {
            name: lambda lockId: run(op, lockId=lockId),
            f"{name}Async": lambda lockId, cb=None, forceNative=False: later(
                op, lockId, cb
            ),
        }

    return {
        **by_id("release"),
        **by_id("get"),
        **by_id("clear"),
        "IPCFlagCapture": lambda lockId=None, limit=1, block=True, onlyExisted=False, sleepMethod=None, timeout=None: (
            run(
                "capture",
                lockId=lockId,
                limit=limit,
                block=block,
                onlyExisted=onlyExisted,
                timeout=timeout,
            )
        ),
        "IPCFlagCheck": lambda lockId, value=0, block=True, onlyExisted=True, sleepMethod=None, timeout=None: (
            run(
                "check",
                lockId=lockId,
                value=value,
                block=block,
                onlyExisted=onlyExisted,
                timeout=timeout,
            )
        ),
        "IPCFlagCaptureAsync": lambda lockId, cb=None, limit=1, onlyExisted=False, forceNative=False: (
            later("capture", lockId, cb, limit=limit, onlyExisted=onlyExisted)
        ),
        "IPCFlagCheckAsync": lambda lockId, cb=None, value=0, onlyExisted=True, forceNative=False: (
            later("check", lockId, cb, value=value, onlyExisted=onlyExisted)
        ),
    }
