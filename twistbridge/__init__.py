"""
twistbridge: one Twisted reactor serving izzati uploads, Igor WebSocket
streams, JSON-RPC 2.0 and bgpy tasks::

    from twistbridge import Bridge, file_return, respond
"""

from twistbridge.app import Bridge
from twistbridge.bgpy._core import respond
from twistbridge.izzati._core import file_return

__all__ = ["Bridge", "file_return", "respond"]
__version__ = "0.1.0"
