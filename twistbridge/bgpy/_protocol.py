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
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Union

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredLock, DeferredQueue
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
from twistbridge.logs import access_bgpy

log = Logger(namespace="twistbridge.bgpy")

OFFLOAD_DECODE = 256 * 1024
"""Frames at least this big are decoded in a thread, not in the reactor."""

REFUSAL_ACK_TIMEOUT = 2.0
"""Seconds to wait for the acknowledgement of a refusal before closing."""

_CLOSED = object()


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
        if self.response.called or self.connection is None:
            return
        if outcome.ok:
            message = ok_message(f"{kind}_task sent no response.")
        else:
            message = error_message(outcome.message)
        self.response.callback(self.connection.encode(message, second=True))


class TaskRuntime:
    """
    The bridge's tasks and their state, run one at a time.

    Every task goes through L{DeferredLock} C{lock} and runs in the bridge's
    thread pool (C{bridge.offloader.in_thread}), so tasks may block and the
    state is never touched by two tasks at once.

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
        self.lock = DeferredLock()
        self.on_exit: Optional[Callable[[], Any]] = None
        self._watched = False
        self._snapshot: Any = None

    # public API -------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Whether no task is running or queued."""
        return not self.lock.locked and not self.lock.waiting

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

        def locked() -> Deferred:
            return defer.ensureDeferred(self._run(kind, client, args, tasks, snapshot))

        d = self.lock.run(locked)

        def finish(outcome: TaskOutcome) -> TaskOutcome:
            client.finish(kind, outcome)
            return outcome

        return d.addCallback(finish)

    # internals --------------------------------------------------------------

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
        if kind == "exec":
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

        def locked() -> Any:
            if not self.machine.initialized:
                return None
            return defer.ensureDeferred(
                self._run(
                    "exit", TaskClient(None, False, self.reactor), {}, None, False
                )
            )

        return self.lock.run(locked)


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
            item = await self._next()
            self._cancel(self._idle_timer)
            if item is _CLOSED:
                return
            if isinstance(item, BgpyError):  # broken framing, too big, too slow
                await self._refuse(item, both_slots=False)
                return
            message = await self._decode(item)
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
        # bgpy's own server pauses after each frame it reads: so do we.
        if self.format == "bgpy":
            self.not_before = max(self.not_before, self.reactor.seconds() + BUFFER_TIME)

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

    async def _handle(self, message: Message) -> bool:
        """Carry out one message; L{False} when the connection is done."""
        runtime = self.runtime
        decision = decide(message, self.authenticated, runtime.token)
        refused = isinstance(decision, Reject) or (
            isinstance(decision, Authenticate) and not decision.ok
        )
        access_bgpy(
            self.peer,
            getattr(message.type, "name", str(message.type)),
            "ERROR" if refused else "OK",
            self.format or "",
        )
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
        await_ack = defer.ensureDeferred(self._send(self.encode(ack(message.type))))
        if isinstance(decision, Authenticate):
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
        await outcome_d
        if kind == "exit":
            await self._after_exit(awaited)
            return False
        return not self.lost

    async def _after_exit(self, acknowledged: bool) -> None:
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
