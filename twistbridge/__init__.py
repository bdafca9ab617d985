"""
twistbridge: one Twisted reactor serving izzati uploads, Igor WebSocket
streams, JSON-RPC 2.0 and bgpy tasks::

    from twistbridge import Bridge, file_return, respond

C{Bridge} is imported on first use, so that importing one of the pure
protocol cores (C{twistbridge.igor._core}, ...) does not import Twisted.
"""

from typing import TYPE_CHECKING, Any

from twistbridge._version import __version__ as __version__
from twistbridge.bgpy._core import respond
from twistbridge.izzati._core import file_return

if TYPE_CHECKING:  # the name, for type checkers and the API reference
    from twistbridge.app import Bridge

__all__ = ["Bridge", "file_return", "respond"]


def __getattr__(name: str) -> Any:
    if name == "Bridge":
        from twistbridge.app import Bridge

        return Bridge
    raise AttributeError(f"module 'twistbridge' has no attribute {name!r}")
