"""
What a client is told when a handler fails, in the same words on all four
protocols: the exception's class and message (never a traceback), and for a
result that JSON cannot carry, where in it the offending value is and its
type.

This module imports nothing of twistbridge, so that every protocol's pure
core can use it.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Set, Tuple, cast

__all__ = ["Busy", "ServerMessage", "error_text", "not_json_text"]

# Deeper than this, the search for the offending value stops (the encoders
# refuse such nesting anyway).
_MAX_DEPTH = 200
_SCALARS = (str, int, float, bool, type(None))


class ServerMessage(Exception):
    """
    An exception the server raises itself whose message is written for the
    client: L{error_text} gives its message alone, without its class name
    (for example C{"server busy: ..."}).
    """


class Busy(ServerMessage):
    """
    Work refused at once because the server is overloaded; each protocol
    answers it with its own "server busy" error.  (The offload layer's
    L{twistbridge.offload.ServerBusy} is one.)
    """


def error_parts(exc: BaseException) -> Tuple[str, str]:
    """
    The class name and the text a client may see of a handler's exception.

    An exception that came back from a worker process as a stand-in with a
    C{type_name} (L{twistbridge.offload.RemoteError}) is named by that
    original class.
    """
    type_name = getattr(exc, "type_name", None)
    if isinstance(type_name, str) and type_name:
        name = type_name.rsplit(".", 1)[-1]
    else:
        name = type(exc).__name__
    return name, str(exc)


def error_text(exc: BaseException) -> str:
    """
    What a client sees of a handler's exception: C{"KeyError: 'name'"},
    C{"ValueError: bad input"}, or the class alone when the message is empty.

    A L{ServerMessage} is given as its message alone.
    """
    name, text = error_parts(exc)
    if isinstance(exc, ServerMessage):
        return text or name
    return f"{name}: {text}" if text else name


def not_json_text(
    value: object, what: str = "result", allowed: Tuple[type, ...] = ()
) -> str:
    """
    Say why C{value} (which a JSON encoder refused) is not JSON, naming the
    offending value's place and type: C{"result of type set is not JSON"},
    C{"result['tags'][0] of type bytes is not JSON"}.

    @param what: the name of C{value} in the text.
    @param allowed: container types the protocol's encoder converts itself
        (bgpy sends sets as lists).
    """
    found = _find(value, what, allowed, set(), 0)
    if found is None:
        found = _find_nan(value, what, 0)
    return found or f"{what} is not JSON"


def _find(
    value: object, path: str, allowed: Tuple[type, ...], active: Set[int], depth: int
) -> Optional[str]:
    if isinstance(value, _SCALARS):
        return None
    if depth > _MAX_DEPTH:
        return f"{path.split('[', 1)[0]} is nested too deeply to be JSON"
    items: Iterable[Tuple[object, object]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple, *allowed)):
        # (the allowed types are containers: the encoder iterates them)
        items = ((i, v) for i, v in enumerate(cast(Iterable[object], value)))
    else:
        return f"{path} of type {type(value).__name__} is not JSON"
    if id(value) in active:
        return f"{path} refers back to a value containing it, which JSON cannot hold"
    active.add(id(value))
    try:
        for key, item in items:
            if isinstance(value, dict) and not isinstance(key, _SCALARS):
                return (
                    f"{path} has a key of type {type(key).__name__}, which is not JSON"
                )
            found = _find(item, f"{path}[{key!r}]", allowed, active, depth + 1)
            if found is not None:
                return found
    finally:
        active.discard(id(value))
    return None


def _find_nan(value: object, path: str, depth: int) -> Optional[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value!r}, which is not JSON"
    if depth > _MAX_DEPTH:
        return None
    pairs: Iterable[Tuple[object, object]]
    if isinstance(value, dict):
        pairs = value.items()
    elif isinstance(value, (list, tuple, set, frozenset)):
        pairs = enumerate(value)
    else:
        return None
    for key, item in pairs:
        found = _find_nan(item, f"{path}[{key!r}]", depth + 1)
        if found is not None:
            return found
    return None
