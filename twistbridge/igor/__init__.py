"""
Drop-in replacement for Igor (SPEC section 4)::

    from twistbridge.igor import IgorServer, flatten, IgorProcess

The protocol itself lives in L{twistbridge.igor._core} (pure message rules),
L{twistbridge.igor._hub} (clients, sessions, streams, processes) and
L{twistbridge.igor._protocol} (the autobahn adapter).
"""

from twistbridge.igor._compat import IgorProcess, IgorServer
from twistbridge.igor._core import StreamClosedError, UnknownClientError, flatten

__all__ = [
    "IgorProcess",
    "IgorServer",
    "StreamClosedError",
    "UnknownClientError",
    "flatten",
]
