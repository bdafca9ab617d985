"""
The offloader of the in-memory test client: handlers that would run in the
thread or process pool run in the test's own thread instead, when the test
client flushes, so that a test needs neither threads nor child processes and
sees the same results in the same order.
"""

from __future__ import annotations

import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Dict, List, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistbridge._processpool import find_unpicklable
from twistbridge.handlers import NotPicklable
from twistbridge.offload import Handler, Offloader, call_in_reactor

__all__ = ["InlineOffloader"]


class _Call:
    """One queued call: dropped if cancelled before the test client runs it."""

    __slots__ = ("func", "args", "kwargs", "deferred", "cancelled")

    def __init__(self, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.cancelled = False
        self.deferred: Deferred = Deferred(self._cancel)

    def _cancel(self, d: Deferred) -> None:
        self.cancelled = True

    def run(self) -> None:
        if self.cancelled:
            return
        try:
            result = self.func(*self.args, **self.kwargs)
        except BaseException:
            self.deferred.errback(Failure())
            return
        self.deferred.callback(result)


class InlineOffloader(Offloader):
    """
    An L{Offloader} for tests.

    By default (C{real_pools=False}) thread and process handlers are queued
    with the reactor's C{callFromThread} and run, in order, in the thread
    that flushes the test client (L{TestReactor.run_thread_calls}), exactly
    once.  A process handler's function, arguments and result still go
    through C{pickle}, so a handler that could not be sent to a worker
    fails with L{NotPicklable} as it would in production.

    With C{real_pools=True} thread handlers run in the bridge's real thread
    pool and process handlers in real child processes (a standard
    L{ProcessPoolExecutor}: the pickling and the separate memory are real;
    the bridge's own worker management, C{call_timeout} and crash handling
    are not reproduced).

    @ivar pending: calls handed out and not yet answered (the test client
        waits for these when it flushes).
    """

    def __init__(self, reactor: Any, real_pools: bool = False, **kwargs: Any) -> None:
        Offloader.__init__(self, reactor=reactor, **kwargs)
        self.real_pools = real_pools
        self.pending = 0
        self.calls: Dict[str, int] = {"thread": 0, "process": 0}
        self._executor: Optional[ProcessPoolExecutor] = None

    # calls --------------------------------------------------------------

    def call(self, handler: Handler, *args: Any, **kwargs: Any) -> Deferred:
        """Run C{handler} where the test client puts it (see the class)."""
        if handler.run_in == "reactor":
            return call_in_reactor(handler.func, *args, **kwargs)
        if handler.run_in == "thread":
            return self.in_thread(handler.func, *args, **kwargs)
        return self._process(handler.name, handler.func, args, kwargs)

    def in_thread(
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred:
        """Run C{func} at the next flush (or in the real thread pool)."""
        self.calls["thread"] += 1
        if self.real_pools:
            return self._count(Offloader.in_thread(self, func, *args, **kwargs))
        call = _Call(func, args, kwargs)
        self._reactor.callFromThread(call.run)
        return self._count(call.deferred)

    def in_process(
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred:
        """Run C{func} as a process call: pickled, at the next flush."""
        name = getattr(func, "__qualname__", None) or repr(func)
        return self._process(name, func, args, kwargs)

    def _process(
        self, name: str, func: Callable[..., Any], args: Any, kwargs: Any
    ) -> Deferred:
        self.calls["process"] += 1
        try:
            payload = pickle.dumps((func, args, kwargs), pickle.HIGHEST_PROTOCOL)
        except Exception:
            return defer.fail(
                NotPicklable(
                    f"cannot send {name} to a worker process: "
                    f"{find_unpicklable(func, args, kwargs)}"
                )
            )
        if self.real_pools:
            return self._count(self._in_executor(payload))
        call = _Call(_run_pickled, (name, payload), {})
        self._reactor.callFromThread(call.run)
        return self._count(call.deferred)

    def _in_executor(self, payload: bytes) -> Deferred:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(max_workers=max(1, self.processes))
        d: Deferred = Deferred()
        future = self._executor.submit(_call_pickled, payload)

        def done(f: Future) -> None:
            def fire() -> None:
                if d.called:
                    return
                error = f.exception()
                if error is not None:
                    d.errback(Failure(error))
                else:
                    d.callback(f.result())

            self._reactor.callFromThread(fire)

        future.add_done_callback(done)
        return d

    def _count(self, d: Deferred) -> Deferred:
        self.pending += 1

        def answered(result: Any) -> Any:
            self.pending -= 1
            return result

        return d.addBoth(answered)

    # lifecycle ------------------------------------------------------------

    def startService(self) -> None:
        """Start nothing but the real thread pool, if asked for."""
        if self.real_pools:
            Offloader.startService(self)
        else:
            self.running = True

    def stop(self, grace: Optional[float] = None) -> Deferred:
        """Stop the real pools, if any."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=True, cancel_futures=True)
        if self.real_pools:
            return Offloader.stop(self, grace)
        self.running = False
        return defer.succeed(None)

    def process_pids(self) -> List[int]:
        """No worker processes are kept by the test offloader."""
        return []


def _call_pickled(payload: bytes) -> Any:
    """In a worker process: run a pickled call (its result is pickled back)."""
    func, args, kwargs = pickle.loads(payload)
    return func(*args, **kwargs)


def _run_pickled(name: str, payload: bytes) -> Any:
    """Run a pickled call here; its result must pickle, as from a worker."""
    result = _call_pickled(payload)
    try:
        return pickle.loads(pickle.dumps(result, pickle.HIGHEST_PROTOCOL))
    except Exception as e:
        raise NotPicklable(
            f"the result of {name} cannot be sent back from a worker process: {e}"
        ) from None
