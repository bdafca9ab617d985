"""
The process pool behind C{run_in="process"} (see L{twistbridge.offload}).

Each worker is a child process started with the reactor's C{spawnProcess}
(L{twistbridge._poolworker}); calls go to it as length-prefixed
pickles on a pipe of their own (descriptor 3 in the child), answers come
back on another (descriptor 4), and the child's stdout and stderr go to the
log.  Frames have an 8-byte length, so arguments and results of any size
travel whole.

A worker runs one call at a time.  Because the pool holds every worker as a
separate process transport, it can act on one of them alone:

    - a worker that dies (segfault, C{os._exit}, SIGKILL, OOM-kill) fails only
      the call it was running, with L{WorkerCrashed}; another worker replaces
      it for the next call;
    - a call running past C{call_timeout} gets its worker SIGKILLed and fails
      with L{CallTimeout}; the pool then starts a fresh worker;
    - a call still queued when its L{Deferred} is cancelled is dropped;
    - C{stop()} lets running and queued calls finish for a grace period, then
      SIGKILLs whatever remains: no worker outlives the pool.

A running call may ask the main process for something
(C{twistbridge._poolworker.upcall(name, body)}): the pool hands C{body} to
C{upcalls[name]} (bytes in, bytes or a L{Deferred} of bytes out) and
writes its answer back, or its error's message.  The link is the worker's
own pipes, so only workers this pool started can use it; a request or an
answer over C{upcall_max_bytes} is refused, and a handler that has not
answered within C{upcall_timeout} seconds gets the worker an error saying
so.

This module is longer than most because a call's whole life (queued,
sent, running, answered, crashed, timed out, cancelled, stopped) is one
state machine across the pool and its worker protocol; split, each half
would need the other's states to be read.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

from twisted.internet import defer, error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistbridge import _poolworker
from twistbridge.handlers import (
    CallTimeout,
    NotPicklable,
    OffloadError,
    PoolStopped,
    RemoteError,
    ServerBusy,
    WorkerCrashed,
)

log = Logger()

HEADER = _poolworker.HEADER
# Load the worker loop by its file, without importing the twistbridge package
# (and Twisted): a worker imports only what its calls need.
_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('twistbridge_poolworker', sys.argv[1])\n"
    "worker = importlib.util.module_from_spec(spec)\n"
    "sys.modules['twistbridge._poolworker'] = worker\n"
    "spec.loader.exec_module(worker)\n"
    "sys.exit(worker.main())\n"
)


class RemoteFailure(Failure):
    """
    A L{Failure} of an exception raised in a worker process: its printed
    traceback is the worker's, so that logging it with C{log.failure} shows
    where the handler failed.
    """

    remote_traceback = ""

    def printTraceback(
        self, file: Any = None, elideFrameworkCode: int = 0, detail: str = "default"
    ) -> None:
        """Print the worker's traceback (and this failure's own summary)."""
        if file is None:
            from twisted.python import log as legacy_log

            file = legacy_log.logerr
        if self.remote_traceback:
            file.write("Traceback in the worker process:\n")
            file.write(self.remote_traceback)
            if not self.remote_traceback.endswith("\n"):
                file.write("\n")
        else:
            Failure.printTraceback(self, file, elideFrameworkCode, detail)


def _remote_failure(exception: BaseException, remote_traceback: str) -> Failure:
    try:
        exception.remote_traceback = remote_traceback  # type: ignore[attr-defined]
    except Exception:
        pass
    failure = RemoteFailure(exception)
    failure.remote_traceback = remote_traceback
    return failure


def describe_exit(reason: Failure) -> str:
    """C{"killed by signal 9"} or C{"exited with status 3"}."""
    value = reason.value
    signal_number = getattr(value, "signal", None)
    if signal_number:
        import signal as _signal

        try:
            name = _signal.Signals(signal_number).name
        except ValueError:
            name = str(signal_number)
        return f"killed by signal {signal_number} ({name})"
    return f"exited with status {getattr(value, 'exitCode', None)}"


def find_unpicklable(func: Any, args: Any, kwargs: Any) -> str:
    """Name the first of C{func}, C{args} and C{kwargs} that does not pickle."""
    for what, value in [
        ("the function", func),
        *((f"argument {i}", a) for i, a in enumerate(args)),
        *((f"keyword argument {k!r}", v) for k, v in kwargs.items()),
    ]:
        try:
            pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            inner = _poolworker._describe_unpicklable(value)
            return f"{what} ({inner}): {type(e).__name__}: {e}"
    return "the call"


def worker_environment() -> Dict[str, str]:
    """The environment of a worker: ours, plus our C{sys.path} and main module."""
    env = dict(os.environ)
    cwd = os.getcwd()
    paths = [os.path.abspath(p) if p else cwd for p in sys.path]
    env[_poolworker.SYS_PATH_ENV] = os.pathsep.join(paths)
    env[_poolworker.PARENT_ENV] = str(os.getpid())
    env.pop(_poolworker.MAIN_ENV, None)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    path = getattr(main, "__file__", None)
    if spec is not None and getattr(spec, "name", None) not in (None, "__main__"):
        name = spec.name
        if name.endswith(".__main__"):
            name = name[: -len(".__main__")]
        env[_poolworker.MAIN_ENV] = f"module:{name}"
    elif path and path.endswith(".py"):
        env[_poolworker.MAIN_ENV] = f"path:{os.path.abspath(path)}"
    return env


class _Call:
    """One process call, from queue to answer."""

    __slots__ = ("name", "payload", "deferred", "worker", "timer", "timed_out")

    def __init__(self, name: str, payload: bytes) -> None:
        self.name = name
        self.payload: Optional[bytes] = payload
        self.deferred: Deferred = Deferred()
        self.worker: Optional[_Worker] = None
        self.timer: Any = None
        self.timed_out = False


class _Upcall:
    """One request of a running call to the main process."""

    __slots__ = ("name", "timer")

    def __init__(self, name: str) -> None:
        self.name = name
        self.timer: Any = None


class _Worker(ProcessProtocol):
    """The parent's side of one worker process."""

    def __init__(self, pool: ProcessPool) -> None:
        self.pool = pool
        self.state = "starting"  # starting, idle, busy, closing, dead
        self.call: Optional[_Call] = None
        self.upcall: Optional[_Upcall] = None
        self.broken = False  # killed for breaking the protocol: ignore it
        self.pid: Optional[int] = None
        self._buffer = bytearray()
        self._lines: Dict[int, bytes] = {}
        self.stderr_tail = b""

    def connectionMade(self) -> None:
        """Remember the pid; the child's stdin is not ours to use."""
        assert self.transport is not None  # set before connectionMade
        self.pid = self.transport.pid
        self.transport.closeChildFD(0)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Answers on descriptor 4; stdout and stderr lines go to the log."""
        if childFD == _poolworker.ANSWER_FD:
            if self.broken:
                return  # its death fails its call; nothing it sends counts
            self._buffer += data
            self._frames()
            return
        if childFD == 2:
            self.stderr_tail = (self.stderr_tail + data)[-2000:]
        pending = self._lines.get(childFD, b"") + data
        *lines, rest = pending.split(b"\n")
        self._lines[childFD] = rest
        for line in lines:
            log.info(
                "process worker {pid} {stream}: {line}",
                pid=self.pid,
                stream="stderr" if childFD == 2 else "stdout",
                line=line.decode("utf-8", "replace"),
            )

    def _frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer)
            upcall = bool(length & _poolworker.UPCALL_BIT)
            length &= ~_poolworker.UPCALL_BIT
            if upcall and length > self.pool.upcall_max_bytes:
                # The worker checks the bound before it sends: only a broken
                # worker announces more, and nothing of it is buffered.
                log.error(
                    "process worker {pid} sent a request of {n} bytes to the main "
                    "process, over the {limit}-byte bound: killing it",
                    pid=self.pid,
                    n=length,
                    limit=self.pool.upcall_max_bytes,
                )
                del buffer[:]
                self.broken = True
                self.kill()
                return
            end = HEADER.size + length
            if len(buffer) < end:
                return
            payload = bytes(buffer[HEADER.size : end])
            del buffer[:end]
            if upcall:
                self.pool._upcalled(self, payload)
            else:
                self.pool._answered(self, payload)

    def send_upcall_answer(self, answer: bytes) -> None:
        """Write the answer of the worker's upcall."""
        transport = self.transport
        if transport is None or self.state == "dead":
            return
        try:
            transport.writeToChild(
                _poolworker.REQUEST_FD,
                HEADER.pack(len(answer) | _poolworker.UPCALL_BIT) + answer,
            )
        except (KeyError, OSError):
            self.kill()

    def send(self, payload: bytes) -> None:
        """Write one call frame to the worker."""
        header = HEADER.pack(len(payload))
        transport = self.transport
        assert transport is not None  # calls go only to started workers
        try:
            if len(payload) < 65536:  # one write (copying a small payload is cheap)
                transport.writeToChild(_poolworker.REQUEST_FD, header + payload)
            else:
                transport.writeToChild(_poolworker.REQUEST_FD, header)
                transport.writeToChild(_poolworker.REQUEST_FD, payload)
        except (KeyError, OSError):
            # Its pipe is already gone: the worker is dying, and processEnded
            # will fail this call as a crash.
            self.kill()

    def close(self) -> None:
        """End the worker's input: it exits once its current call is done."""
        if self.transport is None:
            return  # not started: nothing to close
        try:
            self.transport.closeChildFD(_poolworker.REQUEST_FD)
        except Exception:
            pass

    def kill(self) -> None:
        """SIGKILL the worker now."""
        if self.transport is None:
            return  # not started: nothing to kill
        try:
            self.transport.signalProcess("KILL")
        except (error.ProcessExitedAlready, OSError, AttributeError):
            pass

    def processEnded(self, reason: Failure) -> None:
        """Tell the pool."""
        for fd, rest in self._lines.items():
            if rest:
                self.childDataReceived(fd, b"\n")
        self.pool._ended(self, reason)


class ProcessPool:
    """
    A pool of worker processes running pickled calls, one at a time each.

    Workers start on demand, up to C{size} (or all at once with
    L{start_workers}), and stay until the pool stops.

    @ivar size: the most workers that run at once.
    @ivar call_timeout: seconds a call may run before its worker is killed,
        or L{None} (or 0) for no limit.
    @ivar max_queued: calls that may wait for a worker (beyond those a free
        or starting worker takes) before new ones fail at once with
        L{ServerBusy}; 0 for no limit.
    @ivar rejected: calls refused with L{ServerBusy} so far.
    @ivar upcalls: name -> handler of the requests running calls send to
        the main process (C{twistbridge._poolworker.upcall}): C{handler(body)}
        returns bytes or a L{Deferred} of bytes; what it raises goes back as
        its message.  Shared, not copied: handlers added later are used.
    @ivar upcall_timeout: seconds a handler has to answer before the worker
        gets an error saying so.
    @ivar upcall_max_bytes: the bound of one request and of one answer.
    """

    def __init__(
        self,
        size: int,
        call_timeout: Optional[float] = None,
        reactor: Any = None,
        executable: Optional[str] = None,
        max_queued: int = 0,
        upcalls: Optional[Dict[str, Callable[[bytes], Any]]] = None,
        upcall_timeout: float = 30.0,
        upcall_max_bytes: int = _poolworker.UPCALL_MAX,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        if size < 1:
            raise ValueError("a process pool needs at least one worker")
        self.size = size
        self.call_timeout = call_timeout or None
        self.max_queued = max_queued
        self.rejected = 0
        self.upcalls: Dict[str, Callable[[bytes], Any]] = (
            {} if upcalls is None else upcalls
        )
        self.upcall_timeout = upcall_timeout
        self.upcall_max_bytes = upcall_max_bytes
        self._reactor = reactor
        self._executable = executable or sys.executable
        self._workers: List[_Worker] = []
        self._idle: Deque[_Worker] = deque()
        self._queue: Deque[_Call] = deque()
        self._keep = 0  # workers to keep running even when idle
        self._stopping = False
        self._stopped: List[Deferred] = []
        self._kill_timer: Any = None
        self._start_failures = 0
        self._killed_all = False
        self.crashed = 0
        self.timed_out = 0
        self.completed = 0

    # calls ------------------------------------------------------------------

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """Run C{func(*args, **kwargs)} in a worker process."""
        return self.submit(None, func, args, kwargs)

    def submit(
        self, name: Optional[str], func: Callable[..., Any], args: Any, kwargs: Any
    ) -> Deferred:
        """
        Queue C{func(*args, **kwargs)} under C{name} (for errors and logs).

        @return: a L{Deferred} of the result.  It fails with L{NotPicklable}
            (at once) when something of the call or its result does not
            pickle, L{WorkerCrashed} when the worker dies, L{CallTimeout} past
            the call timeout, L{PoolStopped} when the pool is stopping,
            L{ServerBusy} (at once) when C{max_queued} calls already wait;
            otherwise with the handler's own exception (L{RemoteError} when
            that cannot be pickled).  Cancelling it while the call is queued
            drops the call.
        """
        if name is None:
            name = getattr(func, "__qualname__", None) or repr(func)
        if self._stopping:
            return defer.fail(
                PoolStopped(f"cannot run {name}: the process pool is stopping")
            )
        waiting = self.waiting()
        if self.max_queued and waiting >= self.max_queued:
            # Refused before pickling: a refused call costs no memory.
            self.rejected += 1
            return defer.fail(ServerBusy("process", waiting))
        try:
            payload = pickle.dumps((func, args, kwargs), pickle.HIGHEST_PROTOCOL)
        except Exception:
            return defer.fail(
                NotPicklable(
                    f"cannot send {name} to a worker process: "
                    f"{find_unpicklable(func, args, kwargs)}"
                )
            )
        call = _Call(name, payload)
        call.deferred = Deferred(lambda d: self._cancel(call))
        self._queue.append(call)
        self._dispatch()
        return call.deferred

    def waiting(self) -> int:
        """Queued calls that no idle, starting or startable worker will take."""
        starting = sum(1 for w in self._workers if w.state == "starting")
        free = len(self._idle) + starting + self.size - len(self._workers)
        return max(0, len(self._queue) - free)

    def _cancel(self, call: _Call) -> None:
        if call.worker is None:
            try:
                self._queue.remove(call)
            except ValueError:
                pass
            call.payload = None
        # A running call runs on; its answer is dropped (the Deferred fails
        # with CancelledError now).

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            self._start_call(self._idle.popleft(), self._queue.popleft())
        if self._stopping:
            if self._queue and not self._workers:
                self._fail_queue(PoolStopped("the process pool stopped"))
            return
        starting = sum(1 for w in self._workers if w.state == "starting")
        wanted = max(len(self._queue) - starting, self._keep - len(self._workers))
        for _ in range(max(0, min(wanted, self.size - len(self._workers)))):
            self._spawn()
            if not self._queue and not self._keep:
                break
        # A pool grows on demand and never shrinks: a worker that dies is
        # replaced at once.
        self._keep = max(self._keep, len(self._workers))

    def _free(self, worker: _Worker) -> None:
        """C{worker} can take a call: the next queued one, or wait (or close)."""
        if self._queue:
            self._start_call(worker, self._queue.popleft())
        elif self._stopping:
            worker.state = "closing"
            worker.close()
        else:
            worker.state = "idle"
            self._idle.append(worker)

    def _spawn(self) -> None:
        worker = _Worker(self)
        self._workers.append(worker)
        try:
            self._spawn_process(worker)
        except Exception as e:  # no executable, out of file descriptors, ...
            self._workers.remove(worker)
            log.failure("cannot start a process worker")
            if not any(w.state in ("idle", "busy") for w in self._workers):
                self._keep = 0
                self._fail_queue(
                    WorkerCrashed(f"the process pool cannot start a worker ({e})")
                )

    def _spawn_process(self, worker: _Worker) -> None:
        env = worker_environment()
        env[_poolworker.UPCALL_MAX_ENV] = str(self.upcall_max_bytes)
        self._reactor.spawnProcess(
            worker,
            self._executable,
            [self._executable, "-c", _BOOTSTRAP, _poolworker.__file__],
            env=env,
            childFDs={
                0: "w",
                1: "r",
                2: "r",
                _poolworker.REQUEST_FD: "w",
                _poolworker.ANSWER_FD: "r",
            },
        )

    def _start_call(self, worker: _Worker, call: _Call) -> None:
        worker.state = "busy"
        worker.call = call
        call.worker = worker
        payload, call.payload = call.payload, None
        assert payload is not None
        worker.send(payload)
        if self.call_timeout:
            call.timer = self._reactor.callLater(self.call_timeout, self._timeout, call)

    def _timeout(self, call: _Call) -> None:
        call.timer = None
        worker = call.worker
        if worker is None or worker.call is not call:
            return
        call.timed_out = True
        log.warn(
            "process call {name} ran past {timeout} s: killing worker {pid}",
            name=call.name,
            timeout=self.call_timeout,
            pid=worker.pid,
        )
        worker.kill()

    def _answered(self, worker: _Worker, payload: bytes) -> None:
        if worker.state == "starting":
            self._start_failures = 0
            self._free(worker)
            return
        call, worker.call = worker.call, None
        if call is None:  # a frame nobody asked for: the worker is broken
            log.error("process worker {pid} sent an unexpected answer", pid=worker.pid)
            worker.kill()
            return
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        self.completed += 1
        self._deliver(call, payload)
        if worker.state == "busy":
            self._free(worker)

    def _upcalled(self, worker: _Worker, payload: bytes) -> None:
        if worker.call is None or worker.upcall is not None:
            # Only a running call asks, one request at a time.
            log.error(
                "process worker {pid} sent a request to the main process outside "
                "of a call: killing it",
                pid=worker.pid,
            )
            worker.broken = True
            worker.kill()
            return
        raw, sep, body = payload.partition(b"\0")
        name = raw.decode("utf-8", "replace")
        pending = _Upcall(name)
        worker.upcall = pending

        def answer(data: bytes) -> None:
            if worker.upcall is not pending:
                return  # answered already (timed out), or the worker died
            worker.upcall = None
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            pending.timer = None
            worker.send_upcall_answer(data)

        def refuse(message: str) -> None:
            answer(b"-" + message.encode("utf-8", "replace"))

        handler = self.upcalls.get(name) if sep else None
        if handler is None:
            known = ", ".join(sorted(self.upcalls)) or "none"
            refuse(f"the main process has no handler {name!r} (it has: {known})")
            return

        def ok(result: Any) -> None:
            if not isinstance(result, bytes):
                refuse(
                    f"the main process's {name!r} answered {type(result).__name__}, not bytes"
                )
            elif len(result) + 1 > self.upcall_max_bytes:
                refuse(
                    f"the answer of the main process's {name!r} ({len(result)} "
                    f"bytes) is over the {self.upcall_max_bytes}-byte bound of the "
                    "worker link"
                )
            else:
                answer(b"+" + result)

        def failed(failure: Failure) -> None:
            if worker.upcall is pending:
                refuse(str(failure.value) or type(failure.value).__name__)

        def late() -> None:
            pending.timer = None
            refuse(
                f"the main process's {name!r} did not answer within "
                f"{self.upcall_timeout:g} s"
            )
            d.cancel()

        d = defer.maybeDeferred(handler, body)
        if not d.called:
            pending.timer = self._reactor.callLater(self.upcall_timeout, late)
        d.addCallbacks(ok, failed)
        d.addErrback(lambda f: log.failure("answering an upcall failed", f))

    def _deliver(self, call: _Call, payload: bytes) -> None:
        d = call.deferred
        if d.called:
            return  # cancelled while running
        try:
            answer = pickle.loads(payload)
        except Exception as e:
            d.errback(
                RemoteError(
                    type(e).__name__,
                    f"the answer of {call.name} could not be unpickled: {type(e).__name__}: {e}",
                )
            )
            return
        kind = answer[0]
        if kind == "ok":
            d.callback(answer[1])
        elif kind == "raise":
            d.errback(_remote_failure(answer[1], answer[2]))
        elif kind == "remote":
            _, type_name, message, trace = answer
            d.errback(_remote_failure(RemoteError(type_name, message, trace), trace))
        elif kind == "unpicklable":
            _, what, reason = answer
            d.errback(
                NotPicklable(
                    f"{call.name} returned something that cannot be pickled: {what}: {reason}"
                )
            )
        else:  # "undecodable"
            _, reason, trace = answer
            d.errback(
                _remote_failure(
                    RemoteError(
                        "pickle.UnpicklingError",
                        f"the worker process could not unpickle the call to {call.name}: {reason}",
                        trace,
                    ),
                    trace,
                )
            )

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        was = worker.state
        worker.state = "dead"
        pending, worker.upcall = worker.upcall, None
        if pending is not None and pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if worker in self._workers:
            self._workers.remove(worker)
        try:
            self._idle.remove(worker)
        except ValueError:
            pass
        if was == "starting" and not self._stopping:
            self._start_failed(worker, reason)
        call, worker.call = worker.call, None
        if call is not None:
            if call.timer is not None:
                call.timer.cancel()
                call.timer = None
            if self._killed_all:
                exc: Exception = PoolStopped("the process pool stopped")
            elif call.timed_out:
                self.timed_out += 1
                exc = CallTimeout(
                    f"{call.name} did not finish within {self.call_timeout:g} s: its "
                    f"worker process {worker.pid} was killed and replaced"
                )
            else:
                self.crashed += 1
                exc = WorkerCrashed(
                    f"the worker process {worker.pid} running {call.name} died "
                    f"({describe_exit(reason)})"
                )
                log.error("{message}", message=str(exc))
            if not call.deferred.called:
                call.deferred.errback(exc)
        if self._stopping and not self._workers:
            self._fail_queue(PoolStopped("the process pool stopped"))
            self._all_stopped()
            return
        self._dispatch()

    def _start_failed(self, worker: _Worker, reason: Failure) -> None:
        # A worker that dies before it is ready: after a few in a row, fail
        # what waits rather than respawn in a loop.
        self._start_failures += 1
        detail = self.stderr_text(worker)
        log.error(
            "a process worker could not start ({how}){detail}",
            how=describe_exit(reason),
            detail=f":\n{detail}" if detail else "",
        )
        if self._start_failures >= 3 or not any(
            w.state in ("idle", "busy") for w in self._workers
        ):
            self._keep = 0
            self._fail_queue(
                WorkerCrashed(
                    f"the process pool cannot start a worker ({describe_exit(reason)})"
                )
            )

    @staticmethod
    def stderr_text(worker: _Worker) -> str:
        """The last lines the worker wrote on stderr."""
        return worker.stderr_tail.decode("utf-8", "replace").strip()

    def _fail_queue(self, exc: Exception) -> None:
        queue, self._queue = self._queue, deque()
        for call in queue:
            call.payload = None
            if not call.deferred.called:
                call.deferred.errback(exc)

    # lifecycle ----------------------------------------------------------------

    def start_workers(self) -> None:
        """Start every worker now (instead of on first use), and keep them."""
        if self._stopping:
            return
        self._keep = self.size
        self._dispatch()

    def stop(self, grace: float = 10.0) -> Deferred:
        """
        Take no new calls; let running and queued calls finish for C{grace}
        seconds, then SIGKILL every worker left.

        @return: a L{Deferred} that fires once every worker process has ended.
        """
        d: Deferred = Deferred()
        self._stopped.append(d)
        if self._stopping:
            return d
        self._stopping = True
        self._keep = 0
        idle, self._idle = self._idle, deque()
        for worker in idle:
            self._free(worker)
        if not self._workers:
            self._fail_queue(PoolStopped("the process pool stopped"))
            self._all_stopped()
        else:
            self._kill_timer = self._reactor.callLater(grace, self._kill_all)
        return d

    def _kill_all(self) -> None:
        self._kill_timer = None
        self._killed_all = True
        self._fail_queue(
            PoolStopped("the process pool stopped before this call could run")
        )
        if self._workers:
            log.warn(
                "stopping the process pool: killing {n} worker(s) still busy",
                n=len(self._workers),
            )
        for worker in list(self._workers):
            call = worker.call
            if call is not None and not call.deferred.called:
                call.deferred.errback(
                    PoolStopped(
                        f"{call.name} was still running when the process pool stopped: "
                        f"its worker process {worker.pid} was killed"
                    )
                )
            worker.kill()

    def _all_stopped(self) -> None:
        if self._kill_timer is not None and self._kill_timer.active():
            self._kill_timer.cancel()
        self._kill_timer = None
        waiting, self._stopped = self._stopped, []
        for d in waiting:
            d.callback(None)

    # observability ----------------------------------------------------------

    def pids(self) -> List[int]:
        """The process ids of the running workers."""
        return [w.pid for w in self._workers if w.pid is not None]

    def stats(self) -> Dict[str, Any]:
        """Size, running workers, busy workers, queued calls and counters."""
        return {
            "size": self.size,
            "workers": len(self._workers),
            "busy": sum(1 for w in self._workers if w.call is not None),
            "queued": len(self._queue),
            "rejected": self.rejected,
            "completed": self.completed,
            "crashed": self.crashed,
            "timed_out": self.timed_out,
        }


__all__ = [
    "CallTimeout",
    "CancelledError",
    "NotPicklable",
    "OffloadError",
    "PoolStopped",
    "ProcessPool",
    "RemoteError",
    "RemoteFailure",
    "ServerBusy",
    "WorkerCrashed",
]
