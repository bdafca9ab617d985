"""
Service assembly: the L{MultiService} that runs a L{twistbridge.Bridge}.

    BridgeService
      offload            thread pool + process pool      (started first, stopped last)
      igor, bgpy, ...    protocol services (processes, bgpy init_task)
      listener http      the HTTP Site (izzati, JSON-RPC, /ws, /health)
      listener igor      the standalone Igor WebSocket port
      listener bgpy      the bgpy task port

Listeners are built from endpoint descriptions (C{serverFromString}) and bind
in C{privilegedStartService}, so twistd's C{-u}/C{-g} drop privileges after
binding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from twistbridge.config import listen_description

if TYPE_CHECKING:
    from twistbridge.app import Bridge

log = Logger()


def format_address(address: Any) -> str:
    """C{host:port} for an IP address, the path for a UNIX socket."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return str(name if name is not None else address)


class ListenError(SystemExit):
    """A listener could not bind: ends twistd with this one-line message."""


class ListenerService(Service):
    """
    One listening port, built from an endpoint description.

    @ivar description: the endpoint description.
    @ivar port: the L{IListeningPort} once bound.
    """

    def __init__(self, name: str, description: str, factory: Any, reactor: Any = None):
        self.setName(name)
        self.description = description
        self.factory = factory
        self.port: Optional[Any] = None
        self._reactor = reactor

    def privilegedStartService(self) -> None:
        """Bind now (before twistd drops privileges)."""
        Service.privilegedStartService(self)
        if self.port is not None:
            return
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        endpoint = serverFromString(reactor, self.description)
        failures: list = []
        d = endpoint.listen(self.factory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0].value
            raise ListenError(
                f"twistd bridge: cannot listen for {self.name} on "
                f"{self.description}: {describe_listen_error(reason)}"
            )

    def _listening(self, port: Any) -> None:
        self.port = port
        log.info(
            "{listener} listening on {address}",
            listener=self.name,
            address=format_address(port.getHost()),
        )

    def startService(self) -> None:
        """Bind if C{privilegedStartService} did not run (adopted by an app)."""
        if self.port is None:
            self.privilegedStartService()
        Service.startService(self)

    def stopService(self) -> Deferred:
        """Stop accepting connections."""
        Service.stopService(self)
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    def status(self) -> Dict[str, Any]:
        """Whether this listener is up and what it bound."""
        up = self.port is not None
        return {
            "up": up,
            "address": format_address(self.port.getHost()) if up else None,
        }



def describe_listen_error(reason: BaseException) -> str:
    """A one-line reason for a failed bind (C{port 5020 is already in use})."""
    from twisted.internet.error import CannotListenError

    if isinstance(reason, CannotListenError):
        inner = reason.socketError
        errno_ = getattr(inner, "errno", None)
        if errno_ == 98:
            return f"port {reason.port} is already in use"
        if errno_ == 13:
            return f"permission denied for port {reason.port}"
        return f"{inner}"
    return str(reason) or type(reason).__name__


class BridgeService(MultiService):
    """Everything a L{Bridge} serves, as one service."""

    def __init__(self, bridge: Bridge) -> None:
        MultiService.__init__(self)
        self.bridge = bridge
        self.setName("twistbridge")
        bridge.offloader.setServiceParent(self)
        from twistbridge.bgpy._protocol import build_services as bgpy_services
        from twistbridge.igor._protocol import build_services as igor_services

        for svc in [*igor_services(bridge), *bgpy_services(bridge)]:
            svc.setServiceParent(self)
        self.listeners: Dict[str, ListenerService] = {}
        for name, description, build in self._listener_plan():
            if description is None:
                continue
            listener = ListenerService(name, description, build())
            listener.setServiceParent(self)
            self.listeners[name] = listener

    def _listener_plan(self) -> list:
        from twistbridge.bgpy._protocol import build_factory as bgpy_factory
        from twistbridge.igor._protocol import build_factory as igor_factory
        from twistbridge.web import BridgeSite

        s = self.bridge.settings
        return [
            ("http", listen_description(s.port), lambda: BridgeSite(self.bridge)),
            ("igor", listen_description(s.igor_port), lambda: igor_factory(self.bridge)),
            ("bgpy", listen_description(s.bgpy_port), lambda: bgpy_factory(self.bridge)),
        ]

    def listener_status(self) -> Dict[str, Any]:
        """Each listener's status, for C{/health}."""
        return {name: svc.status() for name, svc in self.listeners.items()}
