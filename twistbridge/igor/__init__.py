"""
Drop-in replacement for Igor::

    from twistbridge.igor import IgorServer, CONFIG, flatten, IgorProcess

(or, keeping Igor's module layout, C{from twistbridge.igor.server import
IgorServer, CONFIG} and C{from twistbridge.igor.core import flatten, ...}).

The protocol itself lives in L{twistbridge.igor._core} (pure message rules),
L{twistbridge.igor._hub} (the hub: messages, drain), with
L{twistbridge.igor._clients} (ids, sessions, takeover),
L{twistbridge.igor._streams} and L{twistbridge.igor._processes}, and
L{twistbridge.igor._protocol} (the autobahn adapter); Igor's file server in
L{twistbridge.igor._fileserver}.  The names below are imported on first use.
"""

from types import ModuleType
from typing import TYPE_CHECKING

from twistbridge._lazy import lazy_attributes

if TYPE_CHECKING:  # the names, for type checkers and the API reference
    from twistbridge.igor._compat import (
        CONFIG,
        IgorProcess,
        IgorServer,
        ProcessOutput,
        Stream,
        StreamClosedError,
        UnknownClientError,
        WebSocketServer,
        flatten,
        handler_wrapper,
    )

__all__ = [
    "CONFIG",
    "IgorProcess",
    "IgorServer",
    "ProcessOutput",
    "Stream",
    "StreamClosedError",
    "UnknownClientError",
    "WebSocketServer",
    "flatten",
    "handler_wrapper",
]


def _load() -> ModuleType:
    from twistbridge.igor import _compat

    return _compat


__getattr__ = lazy_attributes(__name__, __all__, _load)
