"""
What a bgpy message asks for, and the tasks: the per-message decisions
(L{decide}: authenticate, reject, or run a task), the three task functions
(L{TaskSet}) and the state handed from one task to the next
(L{TaskMachine}).  Pure Python, like L{twistbridge.bgpy._core}; the task
runtime (L{twistbridge.bgpy._runtime}) runs what these decide.
"""

from __future__ import annotations

import inspect
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union

from twistbridge.bgpy._core import BgpyError, Message, MessageType
from twistbridge.errors import Busy, error_text

# ---------------------------------------------------------------------------
# Per-message decisions


@dataclass(frozen=True)
class TaskSet:
    """
    The three task functions.

    @ivar init_task: C{init_task()} or C{init_task(client)} -> state.
    @ivar exec_task: C{exec_task(client, state, exec_args)} -> new state.
    @ivar exit_task: C{exit_task(client, state, exit_args)} -> None.
    """

    init_task: Callable[..., Any]
    exec_task: Callable[..., Any]
    exit_task: Callable[..., Any]


TASK_KEYS = ("init_task", "exec_task", "exit_task")


class RefusedTask:
    """
    An inert stand-in for a task function a client may not name (not
    callable, not modifiable): an INIT carrying one is refused, with
    C{message}, unless the tasks are already initialized.

    @ivar message: the refusal (C{"Refused: ..."}).
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("task references cannot be modified")

    def __reduce__(self) -> Any:
        raise pickle.PicklingError("a refused task does not pickle")

    def __repr__(self) -> str:
        return f"<refused task: {self.message}>"


@dataclass(frozen=True)
class Reject:
    """
    Answer an error (after the acknowledgement when a second response is
    awaited, in its place otherwise).

    @ivar error: the error.
    """

    error: BgpyError


@dataclass(frozen=True)
class Authenticate:
    """
    An AUTH message: acknowledge, then answer the outcome.

    @ivar ok: whether the token matched.
    """

    ok: bool


@dataclass(frozen=True)
class RunTask:
    """
    Acknowledge, then run a task through the task runtime.

    @ivar kind: C{"init"}, C{"exec"} or C{"exit"}.
    @ivar args: the message arguments.
    @ivar tasks: tasks sent by the client with INIT, or L{None}.
    @ivar refused: why the tasks sent with INIT are refused, or L{None}
        (answered only when not already initialized).
    """

    kind: str
    args: Dict[str, Any]
    tasks: Optional[TaskSet] = None
    refused: Optional[BgpyError] = None


Decision = Union[Reject, Authenticate, RunTask]


def token_matches(expected: Optional[str], given: Any) -> bool:
    """Constant-time token check; without an expected token, anything goes."""
    import hmac

    if expected is None:
        return True
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def awaits_response(message: Message) -> bool:
    """Whether the client waits for a second response (bgpy's flag)."""
    return message.args.get("await_response") is True


def decide(message: Message, authenticated: bool, token: Optional[str]) -> Decision:
    """What to do with one well-formed message from a client."""
    kind = message.type
    if kind is MessageType.AUTH:
        return Authenticate(token_matches(token, message.args.get("token")))
    if kind in (MessageType.OK, MessageType.ERROR):
        return Reject(BgpyError(f"Unexpected message type '{kind.name}'."))
    if not authenticated:
        return Reject(BgpyError("Not authenticated: send AUTH first."))
    if kind is MessageType.INIT:
        given = [message.args.get(k) for k in TASK_KEYS]
        for g in given:
            if isinstance(g, RefusedTask):
                return RunTask("init", message.args, refused=BgpyError(g.message, True))
        if all(g is None for g in given):
            return RunTask("init", message.args)
        if not all(callable(g) for g in given):
            return Reject(BgpyError("INIT needs init_task, exec_task and exit_task."))
        return RunTask(
            "init", message.args, TaskSet(*[g for g in given if g is not None])
        )
    if kind is MessageType.EXEC:
        return RunTask("exec", message.args)
    return RunTask("exit", message.args)


AUTH_OK = "Authentication successful."
AUTH_FAILED = "Invalid client authentication."
INIT_OK = "Initialization successful."
ALREADY_INITIALIZED = "Already initialized."
NOT_INITIALIZED = "Not initialized."
NO_TASKS = "No tasks configured on the server."


# ---------------------------------------------------------------------------
# Task state machine


def call_init(init_task: Callable[..., Any], client: Any) -> Any:
    """
    Call C{init_task} as it asks: bgpy's server calls C{init_task()}, its
    README writes C{init_task(client)}; both are accepted.
    """
    try:
        inspect.signature(init_task).bind(client)
    except TypeError:
        return init_task()
    except ValueError:  # no signature (a builtin): try the README's form
        pass
    return init_task(client)


@dataclass
class TaskMachine:
    """
    The shared task state: which tasks are in force and the state handed
    from task to task.  One task at a time is the runtime's job; this
    object only decides and records.

    @ivar configured: tasks from the server's configuration, or L{None}.
    @ivar current: the tasks of the running initialization.
    @ivar state: the value the last task returned.
    @ivar initialized: whether C{init_task} ran (and no EXIT since).
    """

    configured: Optional[TaskSet] = None
    current: Optional[TaskSet] = None
    state: Any = None
    initialized: bool = False

    def plan_init(
        self, requested: Union[TaskSet, BgpyError, None]
    ) -> Union[TaskSet, BgpyError]:
        """
        The tasks an INIT runs, or why it cannot ("Already initialized."
        comes first, before why the C{requested} tasks are refused).
        """
        if self.initialized:
            return BgpyError(ALREADY_INITIALIZED)
        if isinstance(requested, BgpyError):
            return requested
        tasks = requested or self.configured
        if tasks is None:
            return BgpyError(NO_TASKS)
        return tasks

    def commit_init(self, tasks: TaskSet, state: Any) -> None:
        """C{init_task} returned C{state}."""
        self.current = tasks
        self.state = state
        self.initialized = True

    def plan_task(self) -> Union[TaskSet, BgpyError]:
        """The tasks an EXEC or EXIT uses, or why it cannot run."""
        if not self.initialized or self.current is None:
            return BgpyError(NOT_INITIALIZED)
        return self.current

    def commit_exec(self, state: Any) -> None:
        """C{exec_task} returned the new C{state}."""
        self.state = state

    def reset(self) -> None:
        """After EXIT: uninitialized again (a later INIT runs init_task)."""
        self.current = None
        self.state = None
        self.initialized = False


@dataclass
class TaskOutcome:
    """
    How a task run ended, for the second response.

    @ivar ok: whether it succeeded.
    @ivar message: the text of the answer when the task sent none.
    @ivar state: the state after the task.
    @ivar close: whether the connection closes after the answer.
    """

    ok: bool
    message: str
    state: Any = None
    close: bool = False


def describe_failure(kind: str, exc: BaseException) -> str:
    """
    The client's text for a task that raised (no traceback):
    C{"exec_task failed: KeyError: 'name'"}; for a task refused unrun
    because the server is overloaded, C{"server busy: ..."}.
    """
    if isinstance(exc, Busy):
        return error_text(exc)
    return f"{kind}_task failed: {error_text(exc)}"
