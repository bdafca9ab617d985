"""
bgpy's pure core: message types, the two wire formats, the per-connection
message decisions and the task state machine.  No I/O happens here; the
Twisted adapter (L{twistbridge.bgpy._protocol}) feeds bytes in, and carries
out what this module decides.

Wire formats, told apart by the first byte a client sends:

    - bgpy: a 16-byte ASCII header holding the length of the body, then the
      body: base64 of a pickled C{bgpy.core.message.Message}.  Bodies are
      decoded only by L{twistbridge.bgpy._pickle}; answers are pickled by
      L{pickle_message} so that bgpy's own client unpickles them into its own
      C{Message} class.
    - JSON lines: one JSON object per line, C{{"type": "EXEC", "args": {...}}}.

Errors are values: L{BgpyError} has a message (sent to the client as
C{ERROR {"message": ...}}) and says whether the connection must close.
"""

from __future__ import annotations

import base64
import binascii
import enum
import inspect
import io
import json
import pickle
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NoReturn, Optional, Union

from twistbridge.errors import Busy, error_text, not_json_text

HEADER_SIZE = 16
"""Bytes of the length header of a bgpy frame."""

BUFFER_TIME = 0.1
"""Seconds bgpy's own server pauses after each frame it reads or writes."""

RECEIVE_PAUSE = 0.09
"""
Seconds between reading a bgpy frame and writing the next one.  bgpy's
client sleeps L{BUFFER_TIME} after each write before it reads: an answer
sent this long after the request is waiting when it reads, and the frame
after it (L{BUFFER_TIME} later again) cannot join it in one read.
"""

_HEADER = re.compile(rb"^ *(\d{1,16}) *$")

#: What a message carries and a task keeps: anything a client pickled or a
#: task returned (JSON lines bring JSON values only).
Data = Any


class MessageType(enum.Enum):
    """The message types of bgpy (same names and values as bgpy's own)."""

    INIT = 0
    EXEC = 1
    EXIT = 2
    AUTH = 3
    OK = 4
    ERROR = 5

    def __setstate__(self, state: object) -> None:
        # A pickle must never change an enum member (BUILD on a member).
        raise pickle.UnpicklingError("MessageType members cannot be modified")


class Message:
    """
    One message: a L{MessageType} and a dict of arguments.

    Pickles from bgpy's client land here (the restricted unpickler maps
    C{bgpy.core.message.Message} to this class).

    @ivar type: the L{MessageType}.
    @ivar args: the arguments.
    """

    __slots__ = ("type", "args")

    def __init__(
        self, type_: MessageType, args: Optional[Dict[str, Data]] = None
    ) -> None:
        self.type = type_
        self.args = {} if args is None else args

    def __setstate__(self, state: object) -> None:
        # What pickle's BUILD hands over for a slotted class:
        # (None or {}, {"type": ..., "args": ...}).
        if not (isinstance(state, tuple) and len(state) == 2):
            raise pickle.UnpicklingError("malformed Message state")
        slots = state[1] or {}
        if state[0] or not isinstance(slots, dict) or set(slots) - {"type", "args"}:
            raise pickle.UnpicklingError("malformed Message state")
        # Unpickled values: the unpickler checks them once the message is
        # built (twistbridge.bgpy._pickle).
        self.type = slots.get("type")  # type: ignore[assignment]
        self.args = slots.get("args", {})

    def get_args(self) -> Dict[str, Data]:
        """The arguments (bgpy's accessor)."""
        return self.args

    def set_args(self, args: Dict[str, Data]) -> None:
        """Replace the arguments (bgpy's accessor)."""
        self.args = args

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.type is other.type and self.args == other.args

    def __repr__(self) -> str:
        return f"Message({self.type}, {self.args!r})"


@dataclass(frozen=True)
class BgpyError:
    """
    An error answered to a client.

    @ivar message: the text of C{ERROR {"message": ...}}.
    @ivar close: whether the connection closes after the answer.
    """

    message: str
    close: bool = False

    def to_message(self) -> Message:
        """The C{ERROR} message carrying this error."""
        return error_message(self.message)


def ok_message(text: str) -> Message:
    """C{OK {"message": text}}."""
    return Message(MessageType.OK, {"message": text})


def error_message(text: str) -> Message:
    """C{ERROR {"message": text}}."""
    return Message(MessageType.ERROR, {"message": text})


def ack(received: MessageType) -> Message:
    """The acknowledgement of a received message: C{OK Received '<TYPE>'}."""
    return ok_message(f"Received '{received.name}'")


# ---------------------------------------------------------------------------
# Format detection


def detect_format(first_byte: bytes) -> str:
    """
    C{"bgpy"} when a connection starts with an ASCII digit (bgpy's length
    header), C{"json"} for anything else (JSON lines; garbage then gets
    JSON-lines errors).
    """
    return "bgpy" if first_byte[:1].isdigit() else "json"


# ---------------------------------------------------------------------------
# bgpy framing


class FrameDecoder:
    """
    Split a byte stream into bgpy frame bodies.

    L{feed} returns the complete bodies, or a fatal L{BgpyError} as the last
    item when a header is not a number or announces more than
    C{max_size} bytes (refused before any buffer for the body is allocated).

    @ivar max_size: the largest body accepted (it may be changed between
        two calls of L{feed}).
    @ivar note: words added to the error about a body over C{max_size}.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.note = ""
        self._buffer = bytearray()
        self._need: Optional[int] = None
        self.failed = False

    @property
    def pending(self) -> bool:
        """Whether part of a frame has been received."""
        return bool(self._buffer) or self._need is not None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned by L{feed}."""
        return len(self._buffer)

    def feed(
        self, data: bytes, most: Optional[int] = None
    ) -> List[Union[bytes, BgpyError]]:
        """
        Add bytes; return the frame bodies they completed, at most C{most}
        of them (the rest stays buffered: C{feed(b"")} returns it later).
        """
        if self.failed:
            return []
        self._buffer += data
        out: List[Union[bytes, BgpyError]] = []
        while True:
            if most is not None and len(out) >= most:
                return out
            if self._need is None:
                if len(self._buffer) < HEADER_SIZE:
                    return out
                header = bytes(self._buffer[:HEADER_SIZE])
                match = _HEADER.match(header)
                if match is None:
                    self.failed = True
                    out.append(
                        BgpyError(f"Invalid header {header!r}: not a length.", True)
                    )
                    return out
                size = int(match.group(1))
                if size == 0:
                    self.failed = True
                    out.append(BgpyError("Invalid header: empty message.", True))
                    return out
                if size > self.max_size:
                    self.failed = True
                    out.append(
                        BgpyError(
                            f"Message of {size} bytes exceeds the limit of "
                            f"{self.max_size} bytes{self.note}.",
                            True,
                        )
                    )
                    return out
                del self._buffer[:HEADER_SIZE]
                self._need = size
            if len(self._buffer) < self._need:
                return out
            with memoryview(self._buffer) as view:  # one copy, not two
                out.append(bytes(view[: self._need]))
            del self._buffer[: self._need]
            self._need = None


def frame(body: bytes) -> bytes:
    """Prefix C{body} with bgpy's 16-byte length header."""
    return f"{len(body):<{HEADER_SIZE}}".encode("ascii") + body


BGPY_MODULE = "bgpy.core.message"


class _AnswerPickler(pickle._Pickler):
    """
    The standard (pure Python) pickler, except that L{Message} and
    L{MessageType} are written as the globals of bgpy's module.
    """

    if TYPE_CHECKING:
        # The pure-Python pickler's own methods, left out of its stubs.
        def save(self, obj: object) -> None: ...
        def write(self, data: bytes) -> None: ...
        def memoize(self, obj: object) -> None: ...

    def save_global(self, obj: type, name: Optional[str] = None) -> None:
        if obj is Message or obj is MessageType:
            self.save(BGPY_MODULE)
            self.save(obj.__name__)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)  # type: ignore[misc]  # (not in the stubs)


def pickle_message(message: Message) -> bytes:
    """
    Pickle C{message} as a C{bgpy.core.message.Message} (protocol 4, as
    bgpy's client writes), so that bgpy's client unpickles it into its own
    class; bgpy need not be installed here.

    @raise pickle.PicklingError: when the arguments do not pickle.
    """
    out = io.BytesIO()
    try:
        _AnswerPickler(out, protocol=4).dump(message)
    except Exception as e:
        raise pickle.PicklingError(f"answer does not pickle: {e}") from e
    return out.getvalue()


def encode_bgpy(message: Message) -> bytes:
    """A complete bgpy frame for C{message}: header + base64(pickle)."""
    # base64.encodebytes is what bgpy's codecs.encode(..., "base64") writes.
    return frame(base64.encodebytes(pickle_message(message)))


def unbase64(body: bytes) -> Union[bytes, BgpyError]:
    """Decode a frame body's base64 (leniently, as bgpy does)."""
    try:
        return binascii.a2b_base64(body)
    except (binascii.Error, ValueError) as e:
        return BgpyError(f"Invalid message: not base64 ({e}).", True)


# ---------------------------------------------------------------------------
# JSON lines


class LineDecoder:
    """
    Split a byte stream into lines (without their line ending).  A line
    longer than C{max_size} is a fatal L{BgpyError}.

    @ivar max_size: the longest line accepted (it may be changed between
        two calls of L{feed}).
    @ivar note: words added to the error about a line over C{max_size}.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.note = ""
        self._buffer = bytearray()
        self._scanned = 0
        self.failed = False

    @property
    def pending(self) -> bool:
        """Whether part of a line has been received."""
        return bool(self._buffer)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned by L{feed}."""
        return len(self._buffer)

    def _too_long(self) -> BgpyError:
        self.failed = True
        return BgpyError(
            f"Line exceeds the limit of {self.max_size} bytes{self.note}.", True
        )

    def feed(
        self, data: bytes, most: Optional[int] = None
    ) -> List[Union[bytes, BgpyError]]:
        """
        Add bytes; return the lines they completed, at most C{most} of them
        (the rest stays buffered: C{feed(b"")} returns it later).
        """
        if self.failed:
            return []
        if not self._buffer and data.endswith(b"\n") and data.count(b"\n") == 1:
            # The usual case: exactly one whole line.
            if len(data) - 1 > self.max_size:
                return [self._too_long()]
            line = data.rstrip(b"\r\n")
            return [line] if line.strip() else []
        self._buffer += data
        out: List[Union[bytes, BgpyError]] = []
        while True:
            if most is not None and len(out) >= most:
                return out
            index = self._buffer.find(b"\n", self._scanned)
            if index < 0:
                self._scanned = len(self._buffer)
                if self._scanned > self.max_size:
                    out.append(self._too_long())
                return out
            if index > self.max_size:
                out.append(self._too_long())
                return out
            line = bytes(self._buffer[:index]).rstrip(b"\r")
            del self._buffer[: index + 1]
            self._scanned = 0
            if line.strip():
                out.append(line)


_CLIENT_TYPES = {
    t.name: t
    for t in (MessageType.INIT, MessageType.EXEC, MessageType.EXIT, MessageType.AUTH)
}


def parse_json_line(line: bytes) -> Union[Message, BgpyError]:
    """
    Parse one JSON line into a L{Message}; an error (not JSON, not an
    object, unknown type, args not an object) keeps the connection usable.
    """
    try:
        data = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # (UnicodeDecodeError is one)
        return BgpyError(f"Invalid JSON: {e}.")
    if type(data) is not dict:
        return BgpyError("A message must be a JSON object with 'type' and 'args'.")
    name = data.get("type")
    kind = _CLIENT_TYPES.get(name.upper()) if isinstance(name, str) else None
    if kind is None:
        return BgpyError(
            f"Unknown message type {name!r}: expected one of AUTH, INIT, EXEC, EXIT."
        )
    args = data.get("args")
    if args is None:
        args = {}
    elif type(args) is not dict:
        return BgpyError("'args' must be a JSON object.")
    return Message(kind, args)


def _json_default(value: object) -> List[object]:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(message: Message) -> bytes:
    """
    One JSON line for C{message}.  Arguments that JSON cannot carry give an
    C{ERROR} line saying so instead.
    """
    try:
        text = json.dumps(
            {"type": message.type.name, "args": message.args},
            default=_json_default,
            separators=(",", ":"),
        )
    except (TypeError, ValueError):
        reason = not_json_text(message.args, "answer", (set, frozenset))
        text = json.dumps(
            {"type": "ERROR", "args": {"message": f"Answer is not JSON: {reason}."}}
        )
    return text.encode("utf-8") + b"\n"


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

    init_task: Callable[..., Data]
    exec_task: Callable[..., Data]
    exit_task: Callable[..., object]


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

    def __setstate__(self, state: object) -> None:
        raise pickle.UnpicklingError("task references cannot be modified")

    def __reduce__(self) -> NoReturn:
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
    args: Dict[str, Data]
    tasks: Optional[TaskSet] = None
    refused: Optional[BgpyError] = None


Decision = Union[Reject, Authenticate, RunTask]


def token_matches(expected: Optional[str], given: object) -> bool:
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
        init_task, exec_task, exit_task = given
        if not (callable(init_task) and callable(exec_task) and callable(exit_task)):
            return Reject(BgpyError("INIT needs init_task, exec_task and exit_task."))
        return RunTask("init", message.args, TaskSet(init_task, exec_task, exit_task))
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


def call_init(init_task: Callable[..., Data], client: object) -> Data:
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
    state: Data = None
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

    def commit_init(self, tasks: TaskSet, state: Data) -> None:
        """C{init_task} returned C{state}."""
        self.current = tasks
        self.state = state
        self.initialized = True

    def plan_task(self) -> Union[TaskSet, BgpyError]:
        """The tasks an EXEC or EXIT uses, or why it cannot run."""
        if not self.initialized or self.current is None:
            return BgpyError(NOT_INITIALIZED)
        return self.current

    def commit_exec(self, state: Data) -> None:
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
    state: Data = None
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


def respond(client: object, response: object, error: bool = False) -> None:
    """
    Send the second response to a client that asked for one
    (C{await_response=True}): C{OK response}, or C{ERROR response} with
    C{error=True}.  Tasks call it with the C{client} they were given; only
    the first call of a task run is sent, and nothing is sent to a client
    that did not ask.
    """
    if client is None or not hasattr(client, "respond"):
        raise TypeError("respond() needs the client object a task was given")
    client.respond(response, error=error)
