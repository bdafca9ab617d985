"""The in-memory test client's public names (loaded on first use)."""

from __future__ import annotations

from twistbridge.testing._bgpy import BgpyTestConnection
from twistbridge.testing._client import BridgeTestClient, RpcError
from twistbridge.testing._http import Response
from twistbridge.testing._igor import IgorTestConnection
from twistbridge.testing._offload import InlineOffloader
from twistbridge.testing._raw import RawConnection
from twistbridge.testing._reactor import TestReactor

__all__ = [
    "BgpyTestConnection",
    "BridgeTestClient",
    "IgorTestConnection",
    "InlineOffloader",
    "RawConnection",
    "Response",
    "RpcError",
    "TestReactor",
]
