"""
bgpy's Twisted adapter: the protocol on C{--bgpy-port}, the task runtime
that runs the tasks one at a time, and the service that runs C{init_task}
at start and C{exit_task} at stop.

    build_factory(bridge)    the L{BgpyFactory} of the bgpy listener
    build_services(bridge)   [L{BgpyTaskService}] when tasks are configured
    runtime(bridge)          the bridge's L{TaskRuntime}

L{runtime} is also the way for other parts of a program (such as the
browser playground) to reach the tasks without a socket::

    rt = runtime(bridge)
    rt.state()                  # a copy of the current state, or None
    d = rt.execute({"command": "increase", "value_change": 10})
    d.addCallback(print)        # the new state (a copy), after exec_task ran

C{execute} goes through the same one-at-a-time queue as the clients' EXEC
messages; it fails with L{TaskError} when the tasks are not initialized or
C{exec_task} raised.

Decisions (what is answered, in which order) come from
L{twistbridge.bgpy._core}; this module carries them out: it paces frames of
the bgpy format so that bgpy's own client never finds two frames in one
read, waits for that client's acknowledgements, and enforces the timeouts.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from collections import deque
from typing import Any, Callable, Deque, Dict, FrozenSet, List, Optional, Union

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure

from twistbridge.bgpy._core import (
    AUTH_FAILED,
    AUTH_OK,
    BUFFER_TIME,
    INIT_OK,
    NOT_INITIALIZED,
    RECEIVE_PAUSE,
    Authenticate,
    BgpyError,
    FrameDecoder,
    LineDecoder,
    Message,
    MessageType,
    Reject,
    RunTask,
    TaskMachine,
    TaskOutcome,
    TaskSet,
    ack,
    awaits_response,
    call_init,
    decide,
    describe_failure,
    detect_format,
    encode_bgpy,
    encode_json,
    error_message,
    ok_message,
    parse_json_line,
)
from twistbridge.bgpy._pickle import decode_frame

log = Logger(namespace="twistbridge.bgpy")

OFFLOAD_DECODE = 256 * 1024
"""Frames at least this big are decoded in a thread, not in the reactor."""

GATHER_TIME = 0.001
"""Seconds EXEC tasks nobody waits on may wait to be handed over together."""

MAX_QUEUED = 1024
"""Tasks nobody waits on that may be queued; past it, clients wait."""

MAX_BATCH = 64
"""EXEC tasks handed to the thread pool in one call, at most."""

MAX_IN_FLIGHT = 32
"""EXEC tasks one connection may have queued before its reading waits."""

REFUSAL_ACK_TIMEOUT = 2.0
"""Seconds to wait for the acknowledgement of a refusal before closing."""

_CLOSED = object()

_JSON_EXEC_ACK = encode_json(ack(MessageType.EXEC))


class TaskError(Exception):
    """A task could not run (not initialized, ...) or raised."""


# ---------------------------------------------------------------------------
# Task runtime


def load_init_file(path: str) -> tuple:
    """
    Load a tasks file (bgpy's C{--init-file}) as a module named after the
    file (C{tasks.py} -> C{tasks}), so that clients pickling functions of
    that module by name find them.

    @return: C{(module name, TaskSet)}.
    @raise SystemExit: with a one-line reason when the file is unusable.
    """
    stem = os.path.splitext(os.path.basename(path))[0] or "bgpy_tasks"
    name = (
        stem
        if stem.isidentifier() and stem not in sys.modules
        else f"bgpy_init_{abs(hash(path))}"
    )
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        tasks = TaskSet(module.init_task, module.exec_task, module.exit_task)
    except Exception as e:
        sys.modules.pop(name, None)
        raise SystemExit(
            f"bgpy: cannot load tasks from {path}: {type(e).__name__}: {e}"
        ) from None
    for func in (tasks.init_task, tasks.exec_task, tasks.exit_task):
        if not callable(func):
            raise SystemExit(f"bgpy: {path}: {func!r} is not callable")
    return name, tasks


class TaskClient:
    """
    The C{client} object a task receives: C{respond(client, ...)} sends
    the second response through it.  Safe to use from the task's thread.

    @ivar peer: the client's address (C{""} when no client is connected).
    @ivar await_response: whether the client waits for a second response.
    @ivar response: fires with the encoded second response (bytes), once.
    """

    def __init__(
        self,
        connection: Optional[BgpyProtocol] = None,
        await_response: bool = False,
        reactor: Any = None,
    ) -> None:
        self.connection = connection
        self.await_response = await_response
        self.peer = connection.peer if connection is not None else ""
        self.response: Deferred = Deferred()
        self._reactor = reactor or (connection.reactor if connection else None)

    def respond(self, response: Any, error: bool = False) -> None:
        """Send C{response} as the second response (the first call only)."""
        if self.connection is None or not self.await_response:
            log.debug("bgpy: respond() without a client waiting: not sent")
            return
        message = Message(MessageType.ERROR if error else MessageType.OK, response)
        # Encode here, in the task's thread, not in the reactor.
        data = self.connection.encode(message, second=True)
        if threadable.isInIOThread() or self._reactor is None:
            self._deliver(data)
        else:
            self._reactor.callFromThread(self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self.response.called:
            log.warn("bgpy: a task responded more than once; only the first is sent")
            return
        self.response.callback(data)

    def finish(self, kind: str, outcome: TaskOutcome) -> None:
        """The task ended: answer for it if it did not respond itself."""
        if self.response.called or self.connection is None or not self.await_response:
            return
        if outcome.ok:
            message = ok_message(f"{kind}_task sent no response.")
        else:
            message = error_message(outcome.message)
        self.response.callback(self.connection.encode(message, second=True))


class _Job:
    """One queued task run."""

    __slots__ = ("kind", "client", "args", "tasks", "snapshot", "deferred")

    def __init__(
        self,
        kind: str,
        client: TaskClient,
        args: Dict[str, Any],
        tasks: Optional[TaskSet],
        snapshot: bool,
        deferred: Optional[Deferred],
    ) -> None:
        self.kind = kind
        self.client = client
        self.args = args
        self.tasks = tasks
        self.snapshot = snapshot
        self.deferred = deferred


def _exec_batch(exec_task: Callable[..., Any], state: Any, calls: List[tuple]) -> tuple:
    """
    In a pool thread: run C{exec_task} for each C{(client, args, snapshot)}
    in turn, handing the state on as bgpy does (a task that raises leaves
    the state as it was).

    @return: C{(state, [(ok, copy of the state or None | Failure), ...])}.
    """
    results = []
    for client, args, snapshot in calls:
        try:
            state = exec_task(client, state, args)
        except Exception:
            results.append((False, Failure()))
        else:
            results.append((True, copy.deepcopy(state) if snapshot else None))
    return state, results


class TaskRuntime:
    """
    The bridge's tasks and their state, run one at a time.

    Every task goes through one queue, in order, and runs in the bridge's
    thread pool (C{bridge.offloader.in_thread}), so tasks may block and the
    state is never touched by two tasks at once.  EXEC tasks waiting in the
    queue together go to the thread in one call and run there one after
    the other (fewer thread hand-offs when clients are fast).

    @ivar machine: the L{TaskMachine} (tasks in force, state).
    @ivar allow_modules: modules whose functions INIT may name.
    @ivar token: the token clients must send, or L{None}.
    @ivar on_exit: called after a connection that sent EXIT is done (the
        standalone server stops there), or L{None}.
    """

    def __init__(self, bridge: Any, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.bridge = bridge
        settings = bridge.settings
        registered = bridge.bgpy
        allow = set(registered.allow_modules) | set(settings.bgpy_allow_module)
        configured: Optional[TaskSet] = None
        if settings.bgpy_init_file:
            module_name, configured = load_init_file(settings.bgpy_init_file)
            allow.add(module_name)
        elif registered.init_task is not None:
            configured = TaskSet(
                registered.init_task, registered.exec_task, registered.exit_task
            )
        self.allow_modules: FrozenSet[str] = frozenset(allow)
        self.machine = TaskMachine(configured=configured)
        try:
            self.token = settings.token()
        except OSError as e:
            raise SystemExit(f"bgpy: cannot read the token file: {e}") from None
        self._queue: Deque[_Job] = deque()
        self._running = False
        self._gather: Any = None
        self.on_exit: Optional[Callable[[], Any]] = None
        self._watched = False
        self._snapshot: Any = None

    # public API -------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Whether no task is running or queued."""
        return not self._running and not self._queue

    def state(self) -> Optional[Dict[str, Any]]:
        """
        A copy of the current state, or L{None} when uninitialized.  While a
        task runs, the state as it was when that task started.
        """
        self._watched = True
        if not self.machine.initialized:
            return None
        if not self.idle and self._snapshot is not None:
            return copy.deepcopy(self._snapshot)
        return copy.deepcopy(self.machine.state)

    def execute(self, exec_args: Dict[str, Any]) -> Deferred:
        """
        Run C{exec_task} with C{exec_args} (queued behind other tasks).

        @return: a L{Deferred} firing with a copy of the new state, or
            failing with L{TaskError}.
        """
        client = TaskClient(None, False, self.reactor)
        d = self.run("exec", client, dict(exec_args), snapshot=True)

        def done(outcome: TaskOutcome) -> Any:
            if not outcome.ok:
                raise TaskError(outcome.message)
            return outcome.state

        return d.addCallback(done)

    def run(
        self,
        kind: str,
        client: TaskClient,
        args: Dict[str, Any],
        tasks: Optional[TaskSet] = None,
        snapshot: bool = False,
    ) -> Deferred:
        """
        Run the C{init}, C{exec} or C{exit} task in turn.

        @return: a L{Deferred} of a L{TaskOutcome} (it never fails).
        """

        d: Deferred = Deferred()
        self._queue.append(_Job(kind, client, args, tasks, snapshot, d))
        if not self._running:
            self._pump()

        def finish(outcome: TaskOutcome) -> TaskOutcome:
            client.finish(kind, outcome)
            return outcome

        return d.addCallback(finish)

    def submit(self, client: TaskClient, exec_args: Dict[str, Any]) -> bool:
        """
        Queue an EXEC nobody waits on (its client awaits no second
        response): no L{Deferred}; a failure is logged.  Such tasks may wait
        L{GATHER_TIME} to be handed to the thread pool together with the
        ones that follow (one thread hand-off instead of one each).

        @return: L{False} (nothing queued) when L{MAX_QUEUED} tasks wait.
        """
        if len(self._queue) >= MAX_QUEUED:
            return False
        self._queue.append(_Job("exec", client, exec_args, None, False, None))
        if not self._running and self._gather is None:
            self._gather = self.reactor.callLater(GATHER_TIME, self._gathered)
        return True

    def drained(self) -> Deferred:
        """A L{Deferred} that fires once every task queued so far has run."""
        return self.run("noop", TaskClient(None, False, self.reactor), {})

    # internals --------------------------------------------------------------

    def _gathered(self) -> None:
        self._gather = None
        if not self._running:
            self._pump()

    def _pump(self) -> None:
        """Run queued jobs in order, one (or one batch of EXEC) at a time."""
        if self._gather is not None:
            self._gather.cancel()
            self._gather = None
        while self._queue:
            self._running = True
            job = self._queue.popleft()
            plan = self.machine.plan_task()
            if job.kind == "exec" and isinstance(plan, TaskSet):
                batch = [job]
                while (
                    self._queue
                    and self._queue[0].kind == "exec"
                    and len(batch) < MAX_BATCH
                ):
                    batch.append(self._queue.popleft())
                d = self.bridge.offloader.in_thread(
                    _exec_batch,
                    plan.exec_task,
                    self.machine.state,
                    [(j.client, j.args, j.snapshot) for j in batch],
                )
                d.addBoth(self._batch_done, batch)
            else:
                d = defer.ensureDeferred(
                    self._run(job.kind, job.client, job.args, job.tasks, job.snapshot)
                )
                d.addBoth(self._job_done, job)
            if not d.called:
                d.addBoth(lambda _: self._pump())
                return
        self._running = False

    def _job_done(self, outcome: Any, job: _Job) -> None:
        if isinstance(outcome, Failure):  # a bug here, not in a task
            log.failure("bgpy: task runtime error", outcome)
            outcome = TaskOutcome(False, "Internal error.")
        if job.deferred is not None:
            job.deferred.callback(outcome)
        elif not outcome.ok:  # nobody waits for it: say it in the log
            log.warn(
                "bgpy: {kind} not run: {message}",
                kind=job.kind,
                message=outcome.message,
            )

    def _batch_done(self, result: Any, batch: List[_Job]) -> None:
        if isinstance(result, Failure):
            log.failure("bgpy: task runtime error", result)
            for job in batch:
                if job.deferred is not None:
                    job.deferred.callback(TaskOutcome(False, "Internal error."))
            return
        state, results = result
        self.machine.commit_exec(state)
        self._keep_snapshot()
        for job, (ok, value) in zip(batch, results):
            if ok:
                if job.deferred is not None:
                    job.deferred.callback(TaskOutcome(True, "", value))
                continue
            log.failure("bgpy: exec_task raised", value)
            if job.deferred is not None:
                job.deferred.callback(
                    TaskOutcome(False, describe_failure("exec", value.value))
                )

    async def _run(
        self,
        kind: str,
        client: TaskClient,
        args: Dict[str, Any],
        tasks: Optional[TaskSet],
        snapshot: bool,
    ) -> TaskOutcome:
        machine = self.machine
        offload = self.bridge.offloader.in_thread
        if kind == "noop" or (kind == "shutdown" and not machine.initialized):
            return TaskOutcome(True, "")
        if kind == "init":
            plan = machine.plan_init(tasks)
            if isinstance(plan, BgpyError):
                return TaskOutcome(False, plan.message)
            try:
                state = await offload(call_init, plan.init_task, client)
            except Exception as e:
                log.failure("bgpy: init_task raised", Failure())
                return TaskOutcome(False, describe_failure(kind, e))
            machine.commit_init(plan, state)
            self._keep_snapshot()
            log.info("bgpy: initialized")
            return TaskOutcome(True, INIT_OK, self._copy(snapshot))
        plan = machine.plan_task()
        if isinstance(plan, BgpyError):
            return TaskOutcome(False, plan.message)
        if kind == "exec":  # (EXEC normally goes through _exec_batch)
            try:
                state = await offload(plan.exec_task, client, machine.state, args)
            except Exception as e:
                log.failure("bgpy: exec_task raised", Failure())
                self._keep_snapshot()
                return TaskOutcome(False, describe_failure(kind, e))
            machine.commit_exec(state)
            self._keep_snapshot()
            return TaskOutcome(True, "", self._copy(snapshot))
        try:
            await offload(plan.exit_task, client, machine.state, args)
        except Exception as e:
            log.failure("bgpy: exit_task raised", Failure())
            outcome = TaskOutcome(False, describe_failure(kind, e))
        else:
            outcome = TaskOutcome(True, "")
        machine.reset()
        self._snapshot = None
        log.info("bgpy: exited; the state is uninitialized")
        return outcome

    def _copy(self, wanted: bool) -> Any:
        return copy.deepcopy(self.machine.state) if wanted else None

    def _keep_snapshot(self) -> None:
        if self._watched:
            try:
                self._snapshot = copy.deepcopy(self.machine.state)
            except Exception:
                self._snapshot = None

    def start(self) -> Deferred:
        """Run C{init_task} of the configured tasks (service start)."""
        if self.machine.configured is None:
            return defer.succeed(None)
        d = self.run("init", TaskClient(None, False, self.reactor), {})

        def report(outcome: TaskOutcome) -> None:
            if not outcome.ok:
                log.error(
                    "bgpy: init_task at start failed: {message}",
                    message=outcome.message,
                )

        return d.addCallback(report)

    def stop(self) -> Deferred:
        """Run C{exit_task} if initialized (graceful shutdown)."""

        return self.run("shutdown", TaskClient(None, False, self.reactor), {})


def runtime(bridge: Any) -> TaskRuntime:
    """The bridge's L{TaskRuntime} (created on first use)."""
    built = bridge._built
    if "bgpy_runtime" not in built:
        built["bgpy_runtime"] = TaskRuntime(bridge)
    return built["bgpy_runtime"]


# ---------------------------------------------------------------------------
# The protocol


class BgpyProtocol(Protocol):
    """
    One client connection, in either wire format.

    Messages of a connection are handled one after the other by L{_serve};
    L{dataReceived} only splits bytes into messages.

    @ivar format: C{"bgpy"}, C{"json"}, or L{None} before the first byte.
    @ivar authenticated: whether AUTH succeeded (or no token is set).
    @ivar peer: the client's address, for logs.
    """

    format: Optional[str] = None

    def __init__(self, factory: BgpyFactory) -> None:
        self.factory = factory
        self.runtime = factory.runtime
        self.reactor = factory.reactor
        self.authenticated = self.runtime.token is None
        self.peer = ""
        self.inbox: DeferredQueue = DeferredQueue()
        self.decoder: Union[FrameDecoder, LineDecoder, None] = None
        self.lost = False
        self.paused = False
        self.not_before = 0.0
        self._message_timer: Any = None
        self._idle_timer: Any = None
        self._complained = False
        self.in_flight: List[Deferred] = []
        self._parked = False
        self._quiet_client = TaskClient(self, False)

    # connection events ------------------------------------------------------

    def connectionMade(self) -> None:
        """Start serving this connection."""
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self._arm_idle()
        d = defer.ensureDeferred(self._serve())
        d.addErrback(self._crashed)

    def dataReceived(self, data: bytes) -> None:
        """Split into messages and queue them for L{_serve}."""
        if self.decoder is None:
            self.format = detect_format(data[:1])
            limit = self.factory.settings.max_message_size
            self.decoder = (
                FrameDecoder(limit) if self.format == "bgpy" else LineDecoder(limit)
            )
        self._cancel(self._idle_timer)
        self._idle_timer = None
        items = self.decoder.feed(data)
        for item in items:
            if (
                self._parked
                and self.format == "json"
                and not self.inbox.pending
                and not isinstance(item, BgpyError)
                and len(item) < OFFLOAD_DECODE
            ):
                # Nothing queued before it: handle a JSON line now if it
                # needs no waiting (most EXECs), without the queue.
                item = parse_json_line(item)
                if isinstance(item, Message) and self._handle_now(item):
                    continue
            self.inbox.put(item)
        self._cancel(self._message_timer)
        self._message_timer = None
        if self.decoder.failed:
            self.transport.pauseProducing()
            return
        if self.decoder.pending:
            self._message_timer = self.reactor.callLater(
                self.factory.settings.message_timeout, self._message_timed_out
            )
        if len(self.inbox.pending) >= 32 and not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def connectionLost(self, reason: Failure = None) -> None:
        """Stop timers; wake L{_serve} so it ends."""
        self.lost = True
        self._cancel(self._message_timer)
        self._cancel(self._idle_timer)
        if (
            self.decoder is not None
            and self.decoder.pending
            and not self.decoder.failed
        ):
            log.info(
                "bgpy: {peer}: connection closed in the middle of a message",
                peer=self.peer,
            )
        self.inbox.put(_CLOSED)

    # timers -------------------------------------------------------------------

    @staticmethod
    def _cancel(call: Any) -> None:
        if call is not None and call.active():
            call.cancel()

    def _arm_idle(self) -> None:
        timeout = self.factory.settings.idle_timeout
        if timeout and not self.lost:
            self._idle_timer = self.reactor.callLater(timeout, self._idle_timed_out)

    def _idle_timed_out(self) -> None:
        self._idle_timer = None
        log.info("bgpy: {peer}: idle for too long, closing", peer=self.peer)
        self.transport.loseConnection()

    def _message_timed_out(self) -> None:
        self._message_timer = None
        if self.decoder is not None:
            self.decoder.failed = True
        self.transport.pauseProducing()
        seconds = self.factory.settings.message_timeout
        self.inbox.put(BgpyError(f"Message incomplete after {seconds:g} s.", True))

    # the serving loop -----------------------------------------------------------

    def _crashed(self, failure: Failure) -> None:
        log.failure("bgpy: {peer}: internal error", failure, peer=self.peer)
        if not self.lost:
            self.transport.abortConnection()

    async def _next(self, timeout: Optional[float] = None) -> Any:
        """The next queued item, or L{_CLOSED} (also after C{timeout})."""
        if self.lost and not self.inbox.pending:
            return _CLOSED
        d = self.inbox.get()
        if timeout:
            d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda *a: _CLOSED)
        item = await d
        if self.paused and len(self.inbox.pending) < 8 and not self.lost:
            self.paused = False
            self.transport.resumeProducing()
        return item

    async def _serve(self) -> None:
        while True:
            if self.format == "bgpy":
                self._arm_idle_between_messages()
            self._parked = True
            item = await self._next()
            self._parked = False
            self._cancel(self._idle_timer)
            if item is _CLOSED:
                return
            if isinstance(item, BgpyError) and item.close:
                # broken framing, too big, too slow
                await self._refuse(item, both_slots=False)
                return
            message = (
                item
                if isinstance(item, (Message, BgpyError))
                else await self._decode(item)
            )
            if isinstance(message, BgpyError):
                await self._refuse(message, both_slots=message.close)
                if message.close:
                    return
                continue
            self._received()
            if not await self._handle(message):
                return

    def _arm_idle_between_messages(self) -> None:
        self._cancel(self._idle_timer)
        self._arm_idle()

    async def _decode(self, item: bytes) -> Union[Message, BgpyError]:
        if self.format == "json":
            if len(item) >= OFFLOAD_DECODE:
                return await self.runtime.bridge.offloader.in_thread(
                    parse_json_line, item
                )
            return parse_json_line(item)
        args = (item, self.runtime.allow_modules, self.authenticated)
        if len(item) >= OFFLOAD_DECODE:
            return await self.runtime.bridge.offloader.in_thread(decode_frame, *args)
        return decode_frame(*args)

    def _received(self) -> None:
        # bgpy's own server pauses after each frame it reads; so do we,
        # a little less (RECEIVE_PAUSE): bgpy's client reads its answer
        # BUFFER_TIME after it wrote, so the answer is there when it reads.
        if self.format == "bgpy":
            self.not_before = max(
                self.not_before, self.reactor.seconds() + RECEIVE_PAUSE
            )

    def _complain(self, error: BgpyError) -> None:
        if not self._complained or not error.close:
            log.warn("bgpy: {peer}: {message}", peer=self.peer, message=error.message)
        self._complained = self._complained or error.close

    async def _refuse(self, error: BgpyError, both_slots: bool) -> None:
        """
        Answer a message that cannot be handled; close when fatal.

        A bgpy frame that framed well but did not decode (a refused global)
        is answered in both slots bgpy's client may read (the
        acknowledgement and the awaited response, its await flag being
        unknown), so that its client returns the error instead of hanging.
        """
        self._complain(error)
        self._received()
        await self._send(self.encode(error.to_message()))
        if error.close:
            if both_slots and self.format == "bgpy":
                await self._send(
                    self.encode(error.to_message(), second=True),
                    expect_ack=True,
                    timeout=REFUSAL_ACK_TIMEOUT,
                )
            self._close()

    def _handle_now(self, message: Message) -> bool:
        """
        On JSON lines, carry out an EXEC that needs no waiting (no second
        response awaited) at once: acknowledge and queue the task.

        @return: whether it was handled.
        """
        runtime = self.runtime
        if (
            message.type is not MessageType.EXEC
            or not self.authenticated
            or awaits_response(message)
            or self.lost
        ):
            return False
        if runtime.idle and not runtime.machine.initialized:
            self._complain(BgpyError(NOT_INITIALIZED))
            self.transport.write(self.encode(error_message(NOT_INITIALIZED)))
            return True
        if not runtime.submit(self._quiet_client, message.args):
            return False  # a long queue: the slow path makes this client wait
        self.transport.write(_JSON_EXEC_ACK)
        return True

    def _track(self, outcome_d: Deferred) -> None:
        self.in_flight.append(outcome_d)
        outcome_d.addBoth(self._task_done, outcome_d)

    async def _handle(self, message: Message) -> bool:
        """Carry out one message; L{False} when the connection is done."""
        if self.format == "json" and self._handle_now(message):
            return not self.lost
        runtime = self.runtime
        decision = decide(message, self.authenticated, runtime.token)
        awaited = awaits_response(message)
        if (
            isinstance(decision, RunTask)
            and decision.kind == "exec"
            and runtime.idle
            and not runtime.machine.initialized
        ):
            decision = Reject(BgpyError(NOT_INITIALIZED))
        if isinstance(decision, Reject):
            self._complain(decision.error)
            if awaited:
                await self._send(self.encode(ack(message.type)))
            await self._send(
                self.encode(decision.error.to_message(), second=awaited),
                expect_ack=awaited,
            )
            return not self.lost
        await_ack = self._start_send(self.encode(ack(message.type)))
        if isinstance(decision, Authenticate):
            if await_ack is not None:
                await await_ack
            if decision.ok:
                self.authenticated = True
                await self._send(
                    self.encode(ok_message(AUTH_OK), True), expect_ack=True
                )
                return not self.lost
            log.warn("bgpy: {peer}: invalid client authentication", peer=self.peer)
            await self._send(
                self.encode(error_message(AUTH_FAILED), True), expect_ack=True
            )
            self._close()
            return False
        # RunTask: the task starts while the acknowledgement is paced.
        kind = decision.kind
        client = TaskClient(self, awaited and kind != "init")
        outcome_d = runtime.run(kind, client, decision.args, decision.tasks)
        if await_ack is not None:
            await await_ack
        if kind == "init":
            outcome = await outcome_d
            answer = (
                ok_message(INIT_OK) if outcome.ok else error_message(outcome.message)
            )
            await self._send(self.encode(answer, second=True), expect_ack=True)
            return not self.lost
        if awaited:
            await self._send(await client.response, expect_ack=True)
        elif kind == "exec":
            # Nothing more to answer: go on reading while the task waits its
            # turn (tasks still run one at a time, in order), with a bound
            # on how many a connection may have queued.
            self._track(outcome_d)
            if len(self.in_flight) > MAX_IN_FLIGHT:
                await self.in_flight[0]
            return not self.lost
        await outcome_d
        if kind == "exit":
            return await self._after_exit(awaited)
        return not self.lost

    def _task_done(self, result: Any, d: Deferred) -> Any:
        self.in_flight.remove(d)
        return result

    async def _after_exit(self, acknowledged: bool) -> bool:
        """
        After EXIT, bgpy's client must see the connection end only once it
        is done: close after its acknowledgement of the last frame, or once
        it closed.  JSON-lines connections stay open (unless the server
        stops).
        """
        if self.format == "bgpy" and not acknowledged and not self.lost:
            await self._next(self.factory.settings.message_timeout)
        if self.format == "bgpy" or self.runtime.on_exit is not None:
            self._close()
        if self.runtime.on_exit is not None:
            self.runtime.on_exit()
            return False
        return self.format == "json" and not self.lost

    # writing --------------------------------------------------------------------

    def encode(self, message: Message, second: bool = False) -> bytes:
        """
        Encode for this connection's format (thread-safe).

        C{second} marks a second response: on the bgpy format its args get
        C{"await_response": False}, as bgpy's own server's answers have (its
        C{respond} goes through the same C{send} as a client's request).
        """
        if self.format == "json":
            return encode_json(message)
        if second and isinstance(message.args, dict):
            message = Message(message.type, {**message.args, "await_response": False})
        try:
            return encode_bgpy(message)
        except Exception as e:
            return encode_bgpy(error_message(f"Answer does not pickle: {e}."))

    def _start_send(self, data: bytes) -> Optional[Deferred]:
        """
        Write at once on JSON lines (L{None}); on the bgpy format, start a
        paced L{_send} and return its L{Deferred}.
        """
        if self.format != "bgpy":
            if not self.lost:
                self.transport.write(data)
            return None
        return defer.ensureDeferred(self._send(data))

    async def _send(
        self, data: bytes, expect_ack: bool = False, timeout: Optional[float] = None
    ) -> bool:
        """
        Write one encoded message.  On the bgpy format: not before the
        pause that follows the previous frame, and when C{expect_ack}, wait
        for the client's acknowledgement.

        @return: whether it was written (and acknowledged).
        """
        if self.lost:
            return False
        if self.format != "bgpy":
            self.transport.write(data)
            return True
        delay = self.not_before - self.reactor.seconds()
        if delay > 0:
            await deferLater(self.reactor, delay, lambda: None)
            if self.lost:
                return False
        self.transport.write(data)
        self.not_before = self.reactor.seconds() + BUFFER_TIME
        if not expect_ack:
            return True
        return await self._await_ack(timeout or self.factory.settings.message_timeout)

    async def _await_ack(self, timeout: float) -> bool:
        item = await self._next(timeout)
        if item is _CLOSED:
            if not self.lost:
                log.info("bgpy: {peer}: no acknowledgement, closing", peer=self.peer)
                self._close()
            return False
        message = item if isinstance(item, BgpyError) else await self._decode(item)
        self._received()
        if isinstance(message, BgpyError):
            self._complain(message)
            self._close()
            return False
        if message.type not in (MessageType.OK, MessageType.ERROR):
            self._complain(
                BgpyError(
                    f"Expected an acknowledgement, got '{message.type.name}'.", True
                )
            )
            self._close()
            return False
        return True

    def _close(self) -> None:
        if not self.lost:
            self.transport.loseConnection()


class BgpyFactory(Factory):
    """
    The factory of the bgpy listener.

    @ivar runtime: the bridge's L{TaskRuntime}, shared by every connection.
    @ivar settings: the bridge's settings.
    @ivar reactor: the reactor (for timers).
    """

    noisy = False

    def __init__(self, runtime: TaskRuntime, reactor: Any = None) -> None:
        self.runtime = runtime
        self.settings = runtime.bridge.settings
        self.reactor = reactor or runtime.reactor

    def buildProtocol(self, addr: Any) -> BgpyProtocol:
        """A L{BgpyProtocol} for one connection."""
        return BgpyProtocol(self)


class BgpyTaskService(Service):
    """
    Runs C{init_task} when it starts (as bgpy's C{--init-file} does) and
    C{exit_task} when it stops, if initialized (graceful shutdown).

    @ivar runtime: the L{TaskRuntime}.
    """

    name = "bgpy-tasks"

    def __init__(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime

    def startService(self) -> None:
        """Run C{init_task}."""
        Service.startService(self)
        self.runtime.start()

    def stopService(self) -> Deferred:
        """Run C{exit_task} if initialized; fires once it ran."""
        Service.stopService(self)
        return self.runtime.stop()


def build_factory(bridge: Any) -> Factory:
    """The factory of the bgpy port."""
    return BgpyFactory(runtime(bridge))


def build_services(bridge: Any) -> List[Any]:
    """Services for bgpy: init_task at start, exit_task at stop."""
    rt = runtime(bridge)
    if rt.machine.configured is None:
        return []
    return [BgpyTaskService(rt)]
