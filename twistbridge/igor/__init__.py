"""
Drop-in replacement for Igor::

    from twistbridge.igor import IgorServer, CONFIG, flatten, IgorProcess

(or, keeping Igor's module layout, C{from twistbridge.igor.server import
IgorServer, CONFIG} and C{from twistbridge.igor.core import flatten, ...}).

The protocol itself lives in L{twistbridge.igor._core} (pure message rules),
L{twistbridge.igor._hub} (clients, sessions, streams, processes) and
L{twistbridge.igor._protocol} (the autobahn adapter); Igor's file server in
L{twistbridge.igor._fileserver}.
"""

from twistbridge.igor._compat import CONFIG, IgorProcess, IgorServer, WebSocketServer
from twistbridge.igor._core import StreamClosedError, UnknownClientError, flatten
from twistbridge.igor._objects import ProcessOutput, Stream, handler_wrapper

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
