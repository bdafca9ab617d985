"""
What a handler is, decided once at registration: the user's callable and the
place it runs (the reactor, the thread pool or the process pool), and the
errors a call can fail with for a reason of the pools' own.

Pure Python: the registry (L{twistbridge.registry}) resolves handlers here
without importing Twisted; L{twistbridge.offload} runs them.
"""

from __future__ import annotations

import inspect
import pickle
import sys
from typing import Any, Callable, Optional

from twistbridge.errors import Busy

#: Where a handler can run: the values of C{run_in}.
RUN_IN = ("reactor", "thread", "process")

__all__ = [
    "RUN_IN",
    "CallTimeout",
    "Handler",
    "NotPicklable",
    "OffloadError",
    "PoolStopped",
    "RemoteError",
    "ServerBusy",
    "WorkerCrashed",
    "check_picklable",
    "resolve",
]


class OffloadError(Exception):
    """An offloaded call could not complete for a reason of the pool's own."""


class WorkerCrashed(OffloadError):
    """The worker process running the call died (the call's result is lost)."""


class CallTimeout(OffloadError, TimeoutError):
    """The call ran past the call timeout; its worker was killed and replaced."""


class NotPicklable(OffloadError, TypeError):
    """An argument or a result of a process call could not be pickled."""


class PoolStopped(OffloadError):
    """The pool is stopping or stopped and takes no new calls."""


class ServerBusy(OffloadError, Busy):
    """
    The call was refused at once: as many calls as allowed already wait for
    this pool.  Its message, C{"server busy: ..."}, is what the client is
    told; the call never ran and may be retried later.

    @ivar pool: C{"thread"} or C{"process"}.
    """

    def __init__(self, pool: str, waiting: int) -> None:
        calls = "1 call is" if waiting == 1 else f"{waiting} calls are"
        OffloadError.__init__(
            self, f"server busy: {calls} waiting for the {pool} pool; try again later"
        )
        self.pool = pool


class RemoteError(OffloadError):
    """
    An exception raised in a worker that could not travel back as itself.

    C{str()} is the original exception's message.

    @ivar type_name: the dotted name of the original exception's class.
    @ivar remote_traceback: the worker's traceback, as text.
    """

    def __init__(
        self, type_name: str, message: str, remote_traceback: str = ""
    ) -> None:
        OffloadError.__init__(self, message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Handler:
    """
    A user callable with the place it runs, decided once.

    @ivar func: the user's callable.
    @ivar run_in: C{"reactor"}, C{"thread"} or C{"process"}.
    @ivar name: a name for logs and errors.
    """

    __slots__ = ("func", "run_in", "name")

    def __init__(self, func: Callable[..., Any], run_in: str, name: str) -> None:
        self.func = func
        self.run_in = run_in
        self.name = name

    def __repr__(self) -> str:
        return f"<Handler {self.name} run_in={self.run_in}>"


def resolve(
    func: Callable[..., Any], run_in: Optional[str] = None, name: Optional[str] = None
) -> Handler:
    """
    Decide where C{func} runs and return it as a L{Handler}.

    A handler for the process pool is not pickled here: a decorator runs
    before the module-level name it decorates is bound, so the function
    could not be found by name yet.  L{check_picklable} checks it when the
    bridge starts.

    @param run_in: C{"reactor"}, C{"thread"}, C{"process"} or L{None} for the
        default: the reactor for coroutine functions, the thread pool for
        everything else.  A plain function that returns a C{Deferred} made
        with the reactor's APIs says C{run_in="reactor"} (what it returns
        cannot be known before it is called); whatever ran it, a returned
        C{Deferred} or coroutine is awaited (L{twistbridge.offload}).
    @raise ValueError: for an unknown C{run_in}, or a coroutine function sent
        to a thread or a process.
    @raise TypeError: when C{func} is not callable.
    """
    if not callable(func):
        raise TypeError(f"handler {func!r} is not callable")
    if name is None:
        name = getattr(func, "__qualname__", None) or repr(func)
    # An instance whose __call__ is "async def" is a coroutine function too.
    call = type(func).__call__
    is_coroutine = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        call
    )
    if run_in is None:
        run_in = "reactor" if is_coroutine else "thread"
    if run_in not in RUN_IN:
        raise ValueError(f"run_in must be one of {', '.join(RUN_IN)}: {run_in!r}")
    if is_coroutine and run_in != "reactor":
        raise ValueError(
            f"{name} is a coroutine function: it can only run_in='reactor'"
        )
    return Handler(func, run_in, name)


def check_picklable(handler: Handler, what: str = "") -> None:
    """
    Check that a C{run_in="process"} handler can travel to a worker process:
    it goes by reference (module and name), so it must be reachable under
    its own name at the top level of an importable module.

    @param what: how the handler is registered, for the message
        (C{"the Igor action 'crunch'"}); default its name.
    @raise NotPicklable: with one line saying why and what to do.
    """
    if handler.run_in != "process":
        return
    func = handler.func
    what = what or handler.name
    try:
        pickle.dumps(func, pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise NotPicklable(
            f"{what} cannot run_in='process': {_why_unpicklable(func, e)}"
        ) from None


def _why_unpicklable(func: Any, error: Exception) -> str:
    """Why C{func} cannot be sent to a worker process, and what to do."""
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    advice = "define it with def at the top level of a module"
    if isinstance(qualname, str) and "<lambda>" in qualname:
        return f"it is a lambda, which a worker process cannot import; {advice}"
    if isinstance(qualname, str) and "<locals>" in qualname:
        return (
            f"{qualname} is defined inside a function, so a worker process "
            f"cannot import it; {advice}"
        )
    if isinstance(qualname, str) and isinstance(module, str):
        found: Any = sys.modules.get(module)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is not func:
            return (
                f"{module}.{qualname} is not this function (the name was "
                f"rebound or deleted), so a worker process cannot import it; "
                f"keep the function under its own name at the top level of {module}"
            )
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    return f"it does not pickle ({reason}); {advice}"
