"""
The application object: one L{Bridge} holds what a program registers for the
four protocols (it is a L{twistbridge.registry.Registry}), and serves it::

    bridge = Bridge()

    @bridge.izzati
    def upload(text, data): ...

    @bridge.rpc_function
    def add(a, b): ...

C{Bridge.service()} gives the C{MultiService} that C{twistd bridge} runs (or an
existing application adopts); C{Bridge.resource()} gives the HTTP root
resource for an existing C{Site}.  Both come from the bridge's one
L{twistbridge.runtime.Runtime}, created when the bridge is first served.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

from twisted.application.service import MultiService
from twisted.web.resource import Resource

from twistbridge.jsonrpc._controller import RpcController
from twistbridge.offload import Offloader
from twistbridge.registry import (
    BgpyTasks,
    IzzatiRegistration,
    RegistrationError,
    Registry,
    RpcMethod,
    normalize_path,
    rpc_entries,
)
from twistbridge.runtime import Runtime

__all__ = [
    "BgpyTasks",
    "Bridge",
    "IzzatiRegistration",
    "RegistrationError",
    "RpcMethod",
    "normalize_path",
    "rpc_entries",
]


class Bridge(Registry):
    """
    The application object of a twistbridge program: a
    L{twistbridge.registry.Registry} (the registration methods and the
    settings) that can be served.

    Keyword arguments are the settings (L{twistbridge.config.Settings}); the
    twistd options given on a command line override them.

    Every registration checks the handler against the way its protocol calls
    it and raises L{RegistrationError} (naming the function, what it must
    accept and an example) for one that cannot be called so.  Registering
    a second handler under a name already taken (or a second izzati
    callback, or a second set of bgpy tasks) is a L{RegistrationError} too,
    unless C{replace=True} is passed.  Handlers with C{run_in="process"} are
    checked to pickle by L{check<twistbridge.registry.Registry.check>}, which
    the service runs before it starts.
    """

    _runtime: Optional[Runtime] = None

    def runtime(self) -> Runtime:
        """The bridge's one L{Runtime}, created on first use."""
        if self._runtime is None:
            self._runtime = Runtime(self)
        return self._runtime

    @contextmanager
    def use_runtime(self, runtime: Runtime) -> Iterator[bool]:
        """
        Serve through C{runtime}, a L{Runtime} of this bridge built elsewhere
        (on a test's reactor, say), while the block runs: L{Bridge.runtime}
        (and so L{offloader}, L{rpc}, L{resource}, L{service}) returns it::

            with bridge.use_runtime(Runtime(bridge, reactor=clock)):
                ...

        A bridge that already has its runtime (it is being served) keeps
        it.  Afterwards the bridge has no runtime again (the next use builds
        one), unless another took its place meanwhile.

        @return: a context manager; its value is whether C{runtime} became
            the bridge's (L{False}: the bridge already had one).
        """
        if self._runtime is not None:
            yield False
            return
        self._runtime = runtime
        try:
            yield True
        finally:
            if self._runtime is runtime:
                self._runtime = None

    @property
    def offloader(self) -> Offloader:
        """The thread and process pools every handler goes through."""
        return self.runtime().offloader

    @property
    def rpc(self) -> RpcController:
        """
        The JSON-RPC runtime of this bridge: C{lock}, C{unlock}, C{wait},
        C{stats}, C{reload}, C{callAsync} (see the JSON-RPC documentation).
        """
        return self.runtime().rpc

    def resource(self) -> Resource:
        """
        The HTTP root resource: C{POST /} (izzati), C{/rpc} and every
        registered JSON-RPC path, C{/ws} (Igor), C{/health}.
        """
        return self.runtime().root

    def service(self) -> MultiService:
        """The L{twisted.application.service.MultiService} serving everything."""
        return self.runtime().service
