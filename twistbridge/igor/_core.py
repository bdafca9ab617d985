"""
Igor's pure core: message validation and encoding (origins:
L{twistbridge.origins}).

Nothing here does I/O.  The autobahn adapter (L{twistbridge.igor._protocol})
and the hub (L{twistbridge.igor._hub}) call these functions with plain data;
errors are values (L{ProtocolError}) with a code and a message, turned into
Igor's C{{"error": ..., "code": ...}} message at the edge.

Wire format::

    client -> server  {"streamId": id, "action": name, "data": any}
    server -> client  {"streamId": id, "data": d}
                      {"streamId": id, "error": "message"}
                      {"streamId": id, "close": true}
                      {"streamId": process_id, "action": a, "data": d}
                      {"error": "message", "code": 400}
"""

from __future__ import annotations

import re
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
    cast,
)

from twistbridge._json import JSONValue, dumps_bytes
from twistbridge._json import loads as _json_loads
from twistbridge.errors import error_text as _error_text
from twistbridge.errors import not_json_text

#: A client's stream id: a string or a number (never a boolean).
StreamId = Union[str, int, float]

#: An action handler, C{handler(out, data, ...)}; what it returns is ignored.
Handler = Callable[..., object]

#: The actions of an app: a handler, or a dict of them, by name.
ActionTree = Mapping[str, Union[Handler, "ActionTree"]]

#: The action a client sends to rename itself (and take over a session).
INTRODUCE_SELF = "introduce_self"

#: Seconds a session outlives its client's disconnect (Igor's value).
SESSION_TIMEOUT = 10.0


def _dumps(value: object) -> bytes:
    # Igor's encoding: ASCII, NaN and Infinity written as Python writes them.
    return dumps_bytes(value, ascii=True, allow_nan=True)


def flatten(api: ActionTree, separator: str = ".") -> Dict[str, Handler]:
    """
    Flatten a nested action dict: C{{"events": {"create": f}}} becomes
    C{{"events.create": f}}.

    The result is Igor's, key order included: keys that hold no dict keep
    their place, and each nested dict, flattened, moves to the end in its
    own order (C{{"a": {"b": f}, "d": g}} gives C{["d", "a.b"]}).  Unlike
    Igor's, the argument is left unchanged (a new dict is returned) and
    C{separator} joins every level, not only the first.
    """
    flat: Dict[str, Handler] = {}
    nested: List[Tuple[str, ActionTree]] = []
    for key, value in api.items():
        if isinstance(value, dict):
            nested.append((key, value))
        else:
            # Only dicts nest; whether a leaf is callable is checked when
            # it is registered.
            flat[key] = cast(Handler, value)
    for key, value in nested:
        for sub, func in flatten(value, separator).items():
            flat[f"{key}{separator}{sub}"] = func
    return flat


class ProtocolError:
    """
    A client message the server cannot act on, answered with
    C{{"error": message, "code": code}}.

    @ivar code: an HTTP-like status code (400: the client's mistake, 503:
        the server is shutting down).
    @ivar message: the human-readable reason, sent to the client.
    """

    __slots__ = ("code", "message")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProtocolError) and (self.code, self.message) == (
            other.code,
            other.message,
        )

    def __repr__(self) -> str:
        return f"ProtocolError({self.code}, {self.message!r})"


class Request:
    """
    A valid client message.

    @ivar stream_id: the client's stream id (a string or a number).
    @ivar action: the action name.
    @ivar data: the decoded C{data} member (L{None} when absent).
    """

    __slots__ = ("stream_id", "action", "data")

    def __init__(self, stream_id: StreamId, action: str, data: JSONValue) -> None:
        self.stream_id = stream_id
        self.action = action
        self.data = data

    def __repr__(self) -> str:
        return f"Request({self.stream_id!r}, {self.action!r}, {self.data!r})"


def parse_message(payload: Union[bytes, str]) -> Union[Request, ProtocolError]:
    """
    Validate one WebSocket message (text, or binary holding UTF-8 JSON).

    @return: a L{Request}, or a L{ProtocolError} saying what is wrong.
    """
    try:
        # UTF-8 only (WebSocket text is UTF-8): no encoding sniffing.
        message = _json_loads(payload, allow_nan=True)
    except (ValueError, TypeError, RecursionError):
        return NOT_JSON
    return request_from(message)


#: The error for a message that does not parse.
NOT_JSON = ProtocolError(400, "Message is not valid JSON")


def request_from(message: JSONValue) -> Union[Request, ProtocolError]:
    """Validate a decoded message: a L{Request}, or what is wrong with it."""
    if not isinstance(message, dict):
        return ProtocolError(400, "Message must be a JSON object")
    stream_id = message.get("streamId")
    if stream_id is None:
        return ProtocolError(400, "No streamId specified")
    if isinstance(stream_id, bool) or not isinstance(stream_id, (str, int, float)):
        return ProtocolError(400, "streamId must be a string or a number")
    action = message.get("action")
    if action is None:
        return ProtocolError(400, "No action specified")
    if not isinstance(action, str):
        return ProtocolError(400, "action must be a string")
    return Request(stream_id, action, message.get("data"))


def shorten(text: object, limit: int = 100) -> str:
    """C{text} for an error message or a log line, cut after C{limit} characters."""
    shown = str(text)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def unknown_action(action: str) -> ProtocolError:
    """The error for an action with no handler (Igor's wording)."""
    return ProtocolError(400, f'No handler for action: "{shorten(action)}"')


#: The longest client id C{introduce_self} accepts, in characters.
MAX_CLIENT_ID = 256

_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")


def normalize_client_id(client_id: Union[str, int]) -> Union[str, int]:
    """
    The one form of a client id: a string that is an integer written the
    usual way (C{"2"}, C{"-1"}, not C{"02"}) is that integer, so that
    C{"2"} and C{2} name the same client everywhere (within 64 bits, the
    integers L{parse_introduction} accepts); every other string is itself.
    """
    if (
        isinstance(client_id, str)
        and len(client_id) <= 20
        and _CANONICAL_INT.fullmatch(client_id)
    ):
        number = int(client_id)
        if -(2**63) <= number < 2**63:
            return number
    return client_id


def parse_introduction(data: JSONValue) -> Union[str, int, ProtocolError]:
    """
    The new client id of an C{introduce_self} message's data,
    C{{"client_id": name}}, normalised (L{normalize_client_id}).
    """
    client_id = data.get("client_id") if isinstance(data, dict) else None
    if client_id is None or client_id == "":
        return ProtocolError(400, "No client_id for introduce_self action")
    if isinstance(client_id, bool) or not isinstance(client_id, (str, int)):
        return ProtocolError(400, "client_id must be a string or an integer")
    if isinstance(client_id, int) and not -(2**63) <= client_id < 2**63:
        return ProtocolError(400, "client_id is out of range")
    if isinstance(client_id, str) and len(client_id) > MAX_CLIENT_ID:
        return ProtocolError(
            400, f"client_id is longer than {MAX_CLIENT_ID} characters"
        )
    return normalize_client_id(client_id)


def parse_resume_token(data: JSONValue) -> Union[str, None, ProtocolError]:
    """The C{resume_token} of an C{introduce_self} message's data, if any."""
    token = data.get("resume_token") if isinstance(data, dict) else None
    if token is None:
        return None
    if not isinstance(token, str) or len(token) > 256:
        return ProtocolError(400, "resume_token must be the string the server sent")
    return token


# encoding -----------------------------------------------------------------
#
# Every encoder returns UTF-8 bytes ready for a text frame.  They raise
# TypeError / ValueError for data that is not JSON-serializable, so that the
# handler calling out.send(data) sees its own mistake.


def stream_prefix(stream_id: StreamId) -> bytes:
    """
    The encoded start of every message of one stream, C{{"streamId":id,}};
    a stream computes it once and the C{*_frame} functions complete it.
    """
    return b'{"streamId":' + _dumps(stream_id) + b","


def data_frame(prefix: bytes, data: object) -> bytes:
    """
    C{{"streamId": id, "data": data}} from the stream's prefix.

    @raise TypeError: naming the offending type when C{data} is not JSON.
    """
    return prefix + b'"data":' + _data_json(data) + b"}"


def _data_json(data: object) -> bytes:
    try:
        return _dumps(data)
    except (TypeError, ValueError):
        raise TypeError(not_json_text(data, "data")) from None


def error_frame(prefix: bytes, error: object) -> bytes:
    """C{{"streamId": id, "error": str(error)}} from the stream's prefix."""
    return prefix + b'"error":' + _dumps(str(error)) + b"}"


def close_frame(prefix: bytes) -> bytes:
    """C{{"streamId": id, "close": true}} from the stream's prefix."""
    return prefix + b'"close":true}'


def encode_data(stream_id: StreamId, data: object) -> bytes:
    """C{{"streamId": id, "data": data}}."""
    return data_frame(stream_prefix(stream_id), data)


def encode_error(stream_id: StreamId, error: object) -> bytes:
    """C{{"streamId": id, "error": str(error)}}."""
    return error_frame(stream_prefix(stream_id), error)


def encode_close(stream_id: StreamId) -> bytes:
    """C{{"streamId": id, "close": true}}."""
    return close_frame(stream_prefix(stream_id))


def encode_action(process_id: Union[str, int], action: str, data: object) -> bytes:
    """A process message: C{{"streamId": process_id, "action": a, "data": d}}."""
    return _dumps({"streamId": process_id, "action": action, "data": data})


def encode_protocol_error(error: ProtocolError) -> bytes:
    """C{{"error": message, "code": code}}."""
    return _dumps({"error": error.message, "code": error.code})


def error_text(exc: BaseException) -> str:
    """
    What a client sees of a handler's exception: its class and message,
    never a traceback (L{twistbridge.errors.error_text}).
    """
    return _error_text(exc)


# process-pool handlers ----------------------------------------------------


class RecordingOutput:
    """
    The C{out} of a handler registered with C{run_in="process"}: it pickles
    to the worker, records what the handler sends, and travels back with the
    result, so the server can send it on the stream.

    @ivar messages: C{("data", d)} and C{("error", text)} pairs, in order.
    """

    def __init__(self) -> None:
        self.messages: List[Tuple[str, object]] = []

    def send(self, data: object = None) -> None:
        """Record C{data} (checked now for JSON-serializability)."""
        _data_json(data)
        self.messages.append(("data", data))

    def send_error(self, error: object) -> None:
        """Record an error message."""
        self.messages.append(("error", str(error)))


class ProcessCall:
    """
    A picklable wrapper running a handler in a worker process.

    Calling it returns C{(outcome, messages, detail)}: outcome C{"ok"},
    C{"error"} (detail: the client-visible message and the traceback text)
    or C{"exit"} (the handler raised L{SystemExit}).  Exceptions are caught
    in the worker so that messages sent before them are not lost.
    """

    def __init__(self, func: Handler) -> None:
        self.func = func

    def __call__(
        self, out: RecordingOutput, data: JSONValue, **kwargs: object
    ) -> Tuple[str, List[Tuple[str, object]], Optional[Tuple[str, str]]]:
        """Run the handler with C{out} and C{data}."""
        import traceback

        try:
            result = self.func(out, data, **kwargs)
        except SystemExit:
            return ("exit", out.messages, None)
        except Exception as e:
            return ("error", out.messages, (error_text(e), traceback.format_exc()))
        if _later(result):
            name = getattr(self.func, "__qualname__", repr(self.func))
            text = (
                f"{name} returned a {type(result).__name__}, but a run_in='process' "
                "handler runs in a worker process, which has no reactor to wait "
                "for it: return nothing, or run the handler in the reactor or "
                "the thread pool"
            )
            return ("error", out.messages, (error_text(TypeError(text)), text))
        return ("ok", out.messages, None)


def _later(result: Any) -> bool:
    """
    Whether a handler returned a result to come (a coroutine, a Deferred)
    rather than finished; an awaitable is closed (never to be awaited).
    """
    import inspect
    import sys

    if result is None:
        return False
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            close()
        return True
    defer = sys.modules.get("twisted.internet.defer")
    return defer is not None and isinstance(result, defer.Deferred)


# errors raised to user code -------------------------------------------------


class StreamClosedError(Exception):
    """C{out.send} on a stream that finished or whose client disconnected."""


class UnknownClientError(LookupError):
    """A process sent to a client id that is not connected."""

    def __str__(self) -> str:
        return f'No client with given id exists. Id="{self.args[0]}"'
