"""
The offload layer: where every protocol's handlers run.

A handler is resolved once, at registration, into a L{Handler} that knows
whether it runs in the reactor, in the bridge's own thread pool or in the
process pool:

    - plain C{def} runs in the thread pool, so a blocking handler never stalls
      other clients;
    - C{async def} and handlers returning a L{Deferred} run in the reactor;
    - C{run_in="process"} sends the call to the process pool.

What a handler returns is read here, once, for every protocol: a
L{Deferred} or an awaitable (a coroutine) is awaited in the reactor thread,
whether the reactor or a pool thread called the handler, and the call's
L{Deferred} fires with what it gives (an Igor stream stays open, a JSON-RPC
or izzati call is answered, only then).  A thread handler fires a
L{Deferred} it returns from the reactor thread (C{reactor.callFromThread(
d.callback, value)}), as Twisted requires.  A process handler cannot return
one: there is no reactor in a worker process, so such a call fails with
C{TypeError} saying so.

Protocols never start threads or processes themselves: they call
L{Offloader.call}, which always returns a L{Deferred}.  Cancelling that
L{Deferred} (a client went away) drops a thread or process call that has not
started yet; one already running runs on and its result is discarded.

Each pool lets at most C{max_queued} calls wait (calls no free thread or
worker takes at once); one more fails at once with L{ServerBusy}, which each
protocol answers as its own "server busy" error.  A queued call holds its
arguments, so the bound is a bound on memory too.

The process pool is L{twistbridge._processpool.ProcessPool}; its errors
(L{WorkerCrashed}, L{CallTimeout}, L{NotPicklable}, L{PoolStopped},
L{ServerBusy}, L{RemoteError}, all L{OffloadError}) are importable from
here.

This module is longer than most: the thread pool, the offloader service
that starts and stops both pools, and the one rule for what a handler
returns belong together (every protocol reaches them through
L{Offloader.call}); the process pool lives in L{twistbridge._processpool}.
"""

from __future__ import annotations

import inspect
import queue
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistbridge._processpool import ProcessPool
from twistbridge.handlers import (
    RUN_IN,
    CallTimeout,
    Handler,
    NotPicklable,
    OffloadError,
    PoolStopped,
    RemoteError,
    ServerBusy,
    WorkerCrashed,
    check_picklable,
    resolve,
)

__all__ = [
    "RUN_IN",
    "CallTimeout",
    "Handler",
    "NotPicklable",
    "OffloadError",
    "Offloader",
    "PoolStopped",
    "RemoteError",
    "ServerBusy",
    "WorkerCrashed",
    "awaited",
    "call_in_reactor",
    "check_picklable",
    "is_awaitable",
    "resolve",
]

log = Logger()


def call_in_reactor(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """
    Call C{func} now, in the reactor thread, and return a L{Deferred} of its
    result, awaiting a coroutine or a L{Deferred} it returns.
    """
    result, pending = call_now(func, *args, **kwargs)
    if pending is not None:
        return pending
    if isinstance(result, Failure):
        return defer.fail(result)
    return defer.succeed(result)


def call_now(
    func: Callable[..., Any], *args: Any, **kwargs: Any
) -> Tuple[Any, Optional[Deferred]]:
    """
    L{call_in_reactor} without a L{Deferred} when C{func} is done at once
    (the usual case, which the protocols' fast paths take):
    C{(result, None)}, the result a L{Failure} when C{func} raised, or
    C{(None, pending)} when it returned a L{Deferred} or an awaitable.
    """
    try:
        result = func(*args, **kwargs)
    except BaseException:
        return Failure(), None
    pending = awaited(result)
    if pending is not None:
        return None, pending
    return result, None


def awaited(result: Any) -> Optional[Deferred]:
    """
    The rule for what a handler returned (reactor thread only): a
    L{Deferred} of it when it is a L{Deferred} or an awaitable, else
    L{None} (the result is the value itself).
    """
    if type(result) in _PLAIN:
        # The usual results (JSON values) are never awaitable: skip the
        # inspection below, which is costly next to an echo handler.
        return None
    if isinstance(result, Deferred):
        return result
    if inspect.isawaitable(result):
        # Twisted types only coroutines (and Deferreds) here.
        return defer.ensureDeferred(result)  # type: ignore[arg-type]
    return None


def is_awaitable(result: Any) -> bool:
    """
    Whether L{awaited} would wait for C{result} (a L{Deferred} or an
    awaitable).  Safe in any thread: it only looks.
    """
    return type(result) not in _PLAIN and (
        isinstance(result, Deferred) or inspect.isawaitable(result)
    )


#: Result types that are never awaitable (exact types: a subclass may be).
_PLAIN = frozenset({dict, list, str, int, float, bool, bytes, tuple, type(None)})


class _ThreadCall:
    """One call in the thread pool: dropped if cancelled before it starts."""

    __slots__ = (
        "offloader",
        "pool",
        "func",
        "args",
        "kwargs",
        "deferred",
        "started",
        "cancelled",
        "pending",
    )

    def __init__(self, offloader: Offloader, func: Any, args: Any, kwargs: Any) -> None:
        self.offloader = offloader
        self.pool: Optional[_ThreadPool] = None
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.started = False
        self.cancelled = False
        self.pending: Optional[Deferred] = None
        self.deferred: Deferred = Deferred(self.cancel)

    def cancel(self, d: Deferred) -> None:
        """
        The caller gave up: if no thread took the call yet, never run it,
        let go of its arguments and stop counting it as waiting; if the
        handler returned a L{Deferred} that has not fired, cancel that.
        """
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.cancel()
            return
        with self.offloader._lock:
            if not self.started and not self.cancelled:
                self.cancelled = True
                self.func = self.args = self.kwargs = None
                if self.pool is not None:
                    self.pool._waiting -= 1
                    self.offloader._queued -= 1

    def execute(self) -> tuple:
        """In a pool thread: run the call; C{(True, result)} or C{(False, Failure)}."""
        func, args, kwargs = self.func, self.args, self.kwargs
        # The Deferred's canceller refers to this object: let go of the
        # arguments now rather than when the cycle is collected.
        self.func = self.args = self.kwargs = None
        try:
            return True, func(*args, **kwargs)
        except BaseException:
            return False, Failure()

    def deliver(self, ok: bool, result: Any) -> None:
        """
        In the reactor thread: fire the Deferred (unless cancelled), once
        what the handler returned has fired when it is a L{Deferred} or an
        awaitable (L{awaited}).
        """
        d = self.deferred
        if ok:
            pending = awaited(result)
            if pending is not None:
                if d.called:  # cancelled meanwhile: nobody wants it
                    pending.addErrback(lambda _: None)
                    pending.cancel()
                    return
                self.pending = pending
                pending.addBoth(self._settled)
                return
        if d.called:
            return
        if ok:
            d.callback(result)
        else:
            d.errback(result)

    def _settled(self, result: Any) -> None:
        self.pending = None
        d = self.deferred
        if not d.called:
            d.callback(result)  # a Failure errbacks


_STOP = object()


class _ThreadPool:
    """
    The bridge's thread pool: up to C{size} daemon threads, started on
    demand, taking calls from one queue in order.

    Cheaper per call than Twisted's
    L{twisted.python.threadpool.ThreadPool} (whose calls go through a
    coordinator worker, a context copy and a callback closure): a call is
    one C{SimpleQueue.put} and comes back with one C{callFromThread}, in
    order after anything its handler sent with C{callFromThread}.  A thread stuck in a
    handler never keeps the process alive (daemon threads).  L{stop} lets
    the calls already queued run, then joins the threads, as Twisted's pool
    does.

    Its counts (and those of the L{Offloader}: queued, busy) are kept under
    the offloader's lock.
    """

    def __init__(
        self, offloader: Offloader, size: int, name: str, max_queued: int = 0
    ) -> None:
        self._offloader = offloader
        self._reactor = offloader._reactor
        self._lock = offloader._lock
        self.size = max(1, size)
        self.name = name
        self.max_queued = max_queued
        self.threads: List[threading.Thread] = []
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0  # threads waiting for work, or starting
        self._waiting = 0  # calls put and not yet taken

    def submit(self, call: _ThreadCall) -> None:
        """
        Queue C{call}; start a thread if none is free and the pool may grow.

        @raise ServerBusy: when C{max_queued} calls already wait (calls that
            no idle or startable thread takes).
        """
        with self._lock:
            if self.max_queued:
                spare = self._idle + self.size - len(self.threads)
                waiting = self._waiting - spare
                if waiting >= self.max_queued:
                    self._offloader._rejected_threads += 1
                    raise ServerBusy("thread", waiting)
            self._offloader._queued += 1
            self._waiting += 1
            call.pool = self
            grow = self._waiting > self._idle and len(self.threads) < self.size
            if grow:
                self._idle += 1
        self._work.put(call)
        if grow:
            thread = threading.Thread(
                target=self._loop,
                name=f"PoolThread-{self.name}-{len(self.threads) + 1}",
                daemon=True,
            )
            self.threads.append(thread)
            thread.start()

    def _loop(self) -> None:
        get, lock, offloader = self._work.get, self._lock, self._offloader
        call_from_thread, deliver = self._reactor.callFromThread, self._deliver
        while True:
            call = get()
            if call is _STOP:
                return
            with lock:
                self._idle -= 1
                call.started = True
                run = not call.cancelled
                if run:  # (a cancelled call was uncounted when cancelled)
                    self._waiting -= 1
                    offloader._queued -= 1
                if run:
                    offloader._busy += 1
            if run:
                ok, result = call.execute()
                # One callFromThread per result, never batched: what the
                # handler itself sent with callFromThread (an Igor message)
                # must reach the reactor before its result does.
                call_from_thread(deliver, call, ok, result)
                del call, result
            with lock:
                self._idle += 1

    def _deliver(self, call: _ThreadCall, ok: bool, result: Any) -> None:
        """In the reactor thread: fire the Deferred of a finished call."""
        with self._lock:
            self._offloader._busy -= 1
        call.deliver(ok, result)

    def stop(self) -> None:
        """Let the queued calls run, then end and join every thread (blocks)."""
        threads = list(self.threads)
        for _ in threads:
            self._work.put(_STOP)
        for thread in threads:
            thread.join()


class Offloader(Service):
    """
    The bridge's thread pool and process pool, started and stopped with the
    service.

    The thread pool is the bridge's own (never the reactor's default pool,
    which Twisted also uses for name resolution); its threads start on
    demand, up to C{threads}.  Process workers start on demand too, up to
    C{processes}, and are then kept (a dead one is replaced at once); with
    C{prestart=True} all of them start with the service.

    @ivar threads: thread pool size.
    @ivar processes: process pool size.
    @ivar call_timeout: seconds a process call may run before its worker is
        killed and replaced, or L{None} for no limit.
    @ivar shutdown_timeout: seconds running calls get to finish when the
        service stops; process workers still busy then are killed.
    @ivar prestart: start every process worker with the service.
    @ivar max_queued: calls that may wait per pool before new ones fail
        with L{ServerBusy} (0: no limit).
    @ivar upcalls: name -> handler of the requests that calls running in
        the process pool send to the main process (see
        C{twistbridge._processpool.ProcessPool.upcalls}).
    """

    name = "offload"  # type: ignore[assignment]  # Twisted types it as None

    def __init__(
        self,
        threads: int = 10,
        processes: int = 1,
        call_timeout: Optional[float] = None,
        reactor: Any = None,
        shutdown_timeout: float = 10.0,
        prestart: bool = False,
        max_queued: int = 0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.threads = threads
        self.processes = processes
        self.call_timeout = call_timeout or None
        self.shutdown_timeout = shutdown_timeout
        self.prestart = prestart
        self.max_queued = max_queued
        self._threadpool: Optional[_ThreadPool] = None
        self._processpool: Optional[ProcessPool] = None
        self._queued = 0
        self._busy = 0
        self._rejected_threads = 0
        self._rejected_processes = 0  # by process pools no longer in use
        self._lock = threading.Lock()
        self._trigger: Any = None
        self._stopped = False
        self.upcalls: Dict[str, Callable[[bytes], Any]] = {}

    # lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        """Start the thread pool (and, with C{prestart}, every process worker)."""
        Service.startService(self)
        self._stopped = False
        self._ensure_threadpool()
        if self.prestart:
            self.start_processes()

    def start_processes(self) -> None:
        """Start every process worker now rather than on first use."""
        self._ensure_processpool().start_workers()

    def stopService(self) -> Deferred:
        """
        Stop both pools; the returned L{Deferred} fires once they are down.

        Running calls get C{shutdown_timeout} seconds to finish; then busy
        process workers are killed (threads cannot be: a thread still busy
        is left behind as a daemon thread, logged, and does not hold up the
        exit).  See L{stop} to choose the grace period.
        """
        return self.stop()

    def stop(self, grace: Optional[float] = None) -> Deferred:
        """
        Stop both pools, giving running calls C{grace} seconds (default
        C{shutdown_timeout}) before busy process workers are killed.  A
        server that has already drained its requests can pass what is left
        of its own shutdown bound.
        """
        if grace is None:
            grace = self.shutdown_timeout
        if self.running:
            Service.stopService(self)
        self._stopped = True
        self._remove_trigger()
        waits = []
        if self._processpool is not None:
            pool, self._processpool = self._processpool, None
            self._rejected_processes += pool.rejected
            waits.append(pool.stop(grace))
        if self._threadpool is not None:
            pool_, self._threadpool = self._threadpool, None
            waits.append(self._stop_threadpool(pool_, grace))
        return defer.DeferredList(waits, consumeErrors=True)

    def _remove_trigger(self) -> None:
        if self._trigger is not None:
            try:
                self._reactor.removeSystemEventTrigger(self._trigger)
            except (ValueError, KeyError):
                pass
            self._trigger = None

    def _stop_threadpool(self, pool: _ThreadPool, grace: float) -> Deferred:
        # _ThreadPool.stop() joins its threads: do that off the reactor thread
        # so a handler still running cannot stall shutdown of everything
        # else, and stop waiting after shutdown_timeout.
        d: Deferred = Deferred()

        def done() -> None:
            if not d.called:
                timer.cancel()
                d.callback(None)

        def give_up() -> None:
            log.warn(
                "stopping the thread pool: {n} handler(s) still running after {t} s",
                n=self._busy,
                t=grace,
            )
            d.callback(None)

        def stop() -> None:
            pool.stop()
            self._reactor.callFromThread(done)

        timer = self._reactor.callLater(grace, give_up)
        threading.Thread(
            target=stop, name="twistbridge-threadpool-stop", daemon=True
        ).start()
        return d

    def _not_running_trigger(self) -> None:
        # Used without the service (a resource mounted on its own): still
        # stop the pools with the reactor.
        if not self.running and self._trigger is None:
            self._trigger = self._reactor.addSystemEventTrigger(
                "before", "shutdown", self._stop_at_shutdown
            )

    def _stop_at_shutdown(self) -> Deferred:
        # The trigger is firing: it is spent, and removing it now is
        # deprecated (and will raise in a later Twisted).
        self._trigger = None
        return self.stopService()

    def _ensure_threadpool(self) -> _ThreadPool:
        if self._threadpool is None:
            pool = _ThreadPool(self, self.threads, "twistbridge", self.max_queued)
            self._threadpool = pool
            self._not_running_trigger()
        return self._threadpool

    def _ensure_processpool(self) -> ProcessPool:
        if self._processpool is None:
            if self._stopped:
                raise PoolStopped("the process pool stopped")
            self._processpool = ProcessPool(
                size=self.processes,
                call_timeout=self.call_timeout,
                reactor=self._reactor,
                max_queued=self.max_queued,
                upcalls=self.upcalls,
            )
            self._not_running_trigger()
        return self._processpool

    # calls --------------------------------------------------------------

    def call(self, handler: Handler, *args: Any, **kwargs: Any) -> Deferred:
        """
        Run C{handler} with these arguments where it belongs.

        @return: a L{Deferred} of the result; cancelling it before a thread or
            process call has started drops the call.
        """
        if handler.run_in == "reactor":
            return call_in_reactor(handler.func, *args, **kwargs)
        if handler.run_in == "thread":
            return self.in_thread(handler.func, *args, **kwargs)
        try:
            pool = self._ensure_processpool()
        except PoolStopped as e:
            return defer.fail(e)
        return pool.submit(handler.name, handler.func, args, kwargs)

    def in_thread(
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred:
        """
        Run C{func} in the bridge's thread pool.

        Cancelling the returned L{Deferred} before a thread picked the call up
        means the call never runs.  It fails at once with L{ServerBusy} when
        C{max_queued} calls already wait for a thread.
        """
        call = _ThreadCall(self, func, args, kwargs)
        try:
            self._ensure_threadpool().submit(call)
        except ServerBusy as e:
            return defer.fail(e)
        return call.deferred

    def in_process(
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred:
        """
        Run C{func} in the process pool; C{func}, its arguments and its result
        must pickle (else the call fails with L{NotPicklable}, naming what did
        not).

        Cancelling the returned L{Deferred} before a worker picked the call up
        means the call never runs.
        """
        try:
            pool = self._ensure_processpool()
        except PoolStopped as e:
            return defer.fail(e)
        return pool.call(func, *args, **kwargs)

    # observability -------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Pool sizes, busy workers, queued and refused calls, for C{/health}."""
        with self._lock:
            threads = {
                "size": self.threads,
                "busy": self._busy,
                "queued": self._queued,
                "rejected": self._rejected_threads,
            }
        processes: Dict[str, Any] = {
            "size": self.processes,
            "workers": 0,
            "busy": 0,
            "queued": 0,
            "rejected": self._rejected_processes,
        }
        if self._processpool is not None:
            processes.update(self._processpool.stats())
            processes["rejected"] += self._rejected_processes
        return {"threads": threads, "processes": processes}

    def process_pids(self) -> List[int]:
        """The process ids of the running process workers."""
        if self._processpool is None:
            return []
        return self._processpool.pids()
