"""
Testing a bridge app.

Two ways, one import:

  - L{BridgeTestClient}: the app served in memory, in the test's own
    thread, on a C{MemoryReactorClock}: HTTP (uploads, JSON-RPC, any
    request), Igor WebSockets and bgpy connections go through Twisted's
    in-memory transports to the same protocol objects a socket reaches,
    and time moves only when the test says so;
  - L{BridgeProcess}: a real C{twistd -n bridge} process on ephemeral
    ports, for what only real sockets show.

For instance::

    from twistbridge.testing import BridgeTestClient

    client = BridgeTestClient(bridge)
    assert client.rpc("add", 1, 2) == 3

See the "Testing your app" page of the manual.  Importing this package loads
the in-memory client on first use of its names only, so that C{wait_for} and
L{BridgeProcess} stay cheap to import.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from twistbridge._lazy import lazy_attributes
from twistbridge.testing._process import (
    BridgeProcess,
    JsonLinesClient,
    free_port,
    fuzz_examples,
    process_alive,
    twistd_path,
    wait_for,
)

if TYPE_CHECKING:
    from twistbridge.testing._api import (
        BgpyTestConnection,
        BridgeTestClient,
        IgorTestConnection,
        InlineOffloader,
        RawConnection,
        Response,
        RpcError,
        TestReactor,
    )

__all__ = [
    "BgpyTestConnection",
    "BridgeProcess",
    "BridgeTestClient",
    "IgorTestConnection",
    "InlineOffloader",
    "JsonLinesClient",
    "RawConnection",
    "Response",
    "RpcError",
    "TestReactor",
    "free_port",
    "fuzz_examples",
    "process_alive",
    "twistd_path",
    "wait_for",
]


def _load() -> ModuleType:
    from twistbridge.testing import _api

    return _api


__getattr__ = lazy_attributes(
    __name__,
    [
        "BgpyTestConnection",
        "BridgeTestClient",
        "IgorTestConnection",
        "InlineOffloader",
        "RawConnection",
        "Response",
        "RpcError",
        "TestReactor",
    ],
    _load,
)
