"""
twistbridge: one Twisted reactor serving izzati uploads, Igor WebSocket
streams, JSON-RPC 2.0 and bgpy tasks::

    from twistbridge import Bridge, file_return, respond

The names are imported on first use, so that importing one of the pure
protocol cores (C{twistbridge.igor._core}, ...) does not import Twisted.
"""

from types import ModuleType

from twistbridge._lazy import lazy_attributes
from twistbridge._version import __version__ as __version__

__all__ = ["Bridge", "file_return", "respond"]


def _load() -> ModuleType:
    from twistbridge import _public

    return _public


__getattr__ = lazy_attributes(__name__, __all__, _load)
