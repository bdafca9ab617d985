"""
The bgpy task runtime: the bridge's tasks and their state, run one at a
time, in order, in the bridge's thread pool::

    rt = bridge.runtime().bgpy
    rt.state()                  # a copy of the current state, or None
    d = rt.execute({"command": "increase", "value_change": 10})
    d.addCallback(print)        # the new state (a copy), after exec_task ran

The protocol (L{twistbridge.bgpy._connection}) queues its clients' INIT, EXEC
and EXIT here; other parts of a program (the browser playground) use
L{runtime} to reach the tasks without a socket.  C{execute} goes through the
same queue as the clients' EXEC messages; it fails with L{TaskError} when the
tasks are not initialized or C{exec_task} raised.

This module is longer than most because the task queue, its batching of
EXECs and the task client handed to tasks are one piece: the order of
tasks, which the queue guarantees, is what the batching must keep.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Union

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure

from twistbridge.bgpy._core import (
    BgpyError,
    Message,
    MessageType,
    error_message,
    ok_message,
)
from twistbridge.bgpy._initfile import load_init_file
from twistbridge.bgpy._pickle import TaskPolicy
from twistbridge.bgpy._tasks import (
    INIT_OK,
    TaskMachine,
    TaskOutcome,
    TaskSet,
    call_init,
    describe_failure,
)
from twistbridge.errors import Busy
from twistbridge.offload import Offloader, awaited, is_awaitable
from twistbridge.registry import Registry

log = Logger(namespace="twistbridge.bgpy")

GATHER_TIME = 0.02
"""Seconds EXEC tasks nobody waits on may wait to be handed over together."""

MAX_QUEUED = 1024
"""Tasks nobody waits on that may be queued; past it, clients wait."""

MAX_BATCH = 1024
"""EXEC tasks handed to the thread pool in one call, at most."""


class TaskError(Exception):
    """A task could not run (not initialized, ...) or raised."""


class TaskClient:
    """
    The C{client} object a task receives: C{respond(client, ...)} sends
    the second response through it, twistbridge's (L{respond}) or bgpy's
    own (which calls L{send}).  Safe to use from the task's thread.

    @ivar peer: the client's address (C{""} when no client is connected).
    @ivar await_response: whether the client waits for a second response.
    @ivar response: fires with the encoded second response (bytes), once.
    """

    def __init__(
        self,
        connection: Any = None,
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

    def send(self, message: Any, await_response: bool = False) -> None:
        """
        What bgpy's own C{respond(client, response, error)} calls: send
        C{message} (a bgpy C{Message} of type C{OK} or C{ERROR}, bgpy's
        class or this package's) as the second response.

        bgpy's socket returns the client's acknowledgement; here the server
        awaits it, after the task: this returns L{None}.
        """
        kind = getattr(getattr(message, "type", None), "name", None)
        get_args = getattr(message, "get_args", None)
        if kind not in ("OK", "ERROR") or not callable(get_args):
            raise TypeError(
                f"send() takes a bgpy Message of type OK or ERROR, not {message!r}"
            )
        args = get_args()
        if isinstance(args, dict):
            # bgpy's socket adds the flag; the server adds its own.
            args = {k: v for k, v in args.items() if k != "await_response"}
        self.respond(args, error=kind == "ERROR")
        return None

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
        tasks: Union[TaskSet, BgpyError, None],
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
    the state as it was).  A task that returns a L{Deferred} or a coroutine
    ends the batch there: what it returned is awaited in the reactor
    (L{is_awaitable}), and the calls after it wait their turn again.

    @return: C{(state, [(ok, copy of the state or None | Failure), ...],
        pending)}, C{pending} being the last task's L{Deferred} or
        coroutine, or L{None}.
    """
    results: List[tuple] = []
    for client, args, snapshot in calls:
        try:
            new = exec_task(client, state, args)
        except Exception:
            results.append((False, Failure()))
            continue
        if is_awaitable(new):
            return state, results, new
        state = new
        results.append((True, copy.deepcopy(state) if snapshot else None))
    return state, results, None


class TaskRuntime:
    """
    The bridge's tasks and their state, run one at a time.

    Every task goes through one queue, in order, and runs in the bridge's
    thread pool (C{offloader.in_thread}), so tasks may block and the
    state is never touched by two tasks at once.  EXEC tasks waiting in the
    queue together go to the thread in one call and run there one after
    the other (fewer thread hand-offs when clients are fast).

    @ivar machine: the L{TaskMachine} (tasks in force, state).
    @ivar allow_modules: the L{TaskPolicy}: which task functions a client
        may name (also the collection of the modules always allowed).
    @ivar token: the token clients must send, or L{None}.
    @ivar on_exit: called after a connection that sent EXIT is done (the
        standalone server stops there), or L{None}.
    @ivar cluster: with a broker, the
        L{twistbridge.bgpy._cluster.BgpyCluster} the connections' tasks go
        to instead (run on the instance holding the bgpy lease), else
        L{None}.
    """

    def __init__(
        self, registry: Registry, offloader: Offloader, reactor: Any = None
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self.registry = registry
        self.offloader = offloader
        settings = registry.settings
        registered = registry.bgpy
        try:
            self.token = settings.token()
        except OSError as e:
            raise SystemExit(f"bgpy: cannot read the token file: {e}") from None
        init_modules: Dict[str, str] = {}
        configured: Optional[TaskSet] = None
        if settings.bgpy_init_file:
            real, names, configured = load_init_file(settings.bgpy_init_file)
            init_modules = dict.fromkeys(names, real)
        elif registered.init_task is not None:
            # bgpy_tasks() sets the three together, each checked callable.
            assert registered.exec_task is not None
            assert registered.exit_task is not None
            configured = TaskSet(
                registered.init_task, registered.exec_task, registered.exit_task
            )
        self.allow_modules = TaskPolicy(
            set(registered.allow_modules) | set(settings.bgpy_allow_module),
            init_modules,
            token_configured=self.token is not None,
        )
        self.machine = TaskMachine(configured=configured)
        self._queue: Deque[_Job] = deque()
        self._running = False
        self._gather: Any = None
        self.on_exit: Optional[Callable[[], Any]] = None
        self.cluster: Any = None
        self._snapshot: Any = None

    # public API -------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Whether no task is running or queued."""
        return not self._running and not self._queue

    def queue_depth(self) -> int:
        """How many tasks wait to run (the running one not counted)."""
        return len(self._queue)

    def state(self) -> Optional[Dict[str, Any]]:
        """
        A copy of the current state, or L{None} when uninitialized.  While a
        task runs (in a thread), the state as the last task left it.
        """
        if not self.machine.initialized:
            return None
        if self._running:
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
        tasks: Union[TaskSet, BgpyError, None] = None,
        snapshot: bool = False,
    ) -> Deferred:
        """
        Run the C{init}, C{exec} or C{exit} task in turn.

        C{tasks} are the tasks an INIT sent, or why they are refused (the
        answer when not already initialized).

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
                d = self.offloader.in_thread(
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
            if not d.called or d.paused:  # (paused: waiting for a task's Deferred)
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

    def _batch_done(self, result: Any, batch: List[_Job]) -> Optional[Deferred]:
        if isinstance(result, Failure):
            if result.check(Busy):  # refused unrun: say so, not "internal"
                message = describe_failure("exec", result.value)
            else:
                log.failure("bgpy: task runtime error", result)
                message = "Internal error."
            for job in batch:
                if job.deferred is not None:
                    job.deferred.callback(TaskOutcome(False, message))
            unanswered = sum(1 for job in batch if job.deferred is None)
            if unanswered:
                log.warn(
                    "bgpy: {n} exec not run: {message}", n=unanswered, message=message
                )
            return None
        state, results, pending = result
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
        if pending is None:
            return None
        # The task returned a Deferred or a coroutine: the tasks after it
        # wait (first in the queue) until it fired.
        job, rest = batch[len(results)], batch[len(results) + 1 :]
        self._queue.extendleft(reversed(rest))
        d = awaited(pending)
        assert d is not None
        return d.addBoth(self._pending_done, job)

    def _pending_done(self, result: Any, job: _Job) -> None:
        if isinstance(result, Failure):
            log.failure("bgpy: exec_task raised", result)
            outcome = TaskOutcome(False, describe_failure("exec", result.value))
        else:
            self.machine.commit_exec(result)
            self._keep_snapshot()
            outcome = TaskOutcome(True, "", self._copy(job.snapshot))
        if job.deferred is not None:
            job.deferred.callback(outcome)

    async def _run(
        self,
        kind: str,
        client: TaskClient,
        args: Dict[str, Any],
        tasks: Union[TaskSet, BgpyError, None],
        snapshot: bool,
    ) -> TaskOutcome:
        machine = self.machine
        offload = self.offloader.in_thread
        if kind == "noop" or (kind == "shutdown" and not machine.initialized):
            return TaskOutcome(True, "")
        if kind == "init":
            plan = machine.plan_init(tasks)
            if isinstance(plan, BgpyError):
                return TaskOutcome(False, plan.message, close=plan.close)
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
        # Taken in the reactor between tasks (once per batch), for state().
        try:
            self._snapshot = copy.deepcopy(self.machine.state)
        except Exception:  # a state that does not copy: state() gives None
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
