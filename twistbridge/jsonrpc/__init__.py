"""
Drop-in replacement for flaskJSONRPCServer: C{from twistbridge.jsonrpc import
flaskJSONRPCServer} (see L{twistbridge.jsonrpc._compat}).  The names are
imported on first use.

The protocol itself is a pure core that imports no Twisted
(L{twistbridge.jsonrpc._core}'s values, C{_parse}, C{_dispatch}, C{_encode},
C{_httprules}, C{_state}) under a twisted.web adapter
(L{twistbridge.jsonrpc._controller}'s runtime, C{_resource}, C{_exchange},
C{_jsonp}, C{_http}, C{_reload}).
"""

from types import ModuleType
from typing import TYPE_CHECKING

from twistbridge._lazy import lazy_attributes

if TYPE_CHECKING:  # the names, for type checkers and the API reference
    from twistbridge.jsonrpc._compat import JSONRPCServer, MainError, flaskJSONRPCServer

__all__ = ["JSONRPCServer", "MainError", "flaskJSONRPCServer"]

#: The version of flaskJSONRPCServer whose API this package offers.
__version__ = "0.9.2"


def _load() -> ModuleType:
    from twistbridge.jsonrpc import _compat

    return _compat


__getattr__ = lazy_attributes(__name__, __all__, _load)
