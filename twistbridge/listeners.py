"""
Listeners: one listening port each, with its connection limits and the
record of its open connections::

    listener = build_listener("http", "tcp:5020", site, settings, HTTP_REFUSAL)
    listener.setServiceParent(bridge_service)

A L{ListenerService} is Twisted's L{StreamServerEndpointService} on the
endpoint of a description (C{serverFromString}, parsed when it binds), so
it binds in C{privilegedStartService} and twistd's C{-u}/C{-g} drop
privileges after binding.  What it listens with is a L{ConnectionTracker}
wrapping the protocol factory: it enforces the listener's
L{twistbridge.limits.ListenerLimits} (L{ConnectionLimits}) and knows every
open connection, so that a shutdown can drain them and, at the end, abort
them.  A port that cannot be bound is a L{ListenError}: one line naming the
listener, the description and the reason.

(Over 400 lines: the port, its limits and its record of connections are one
piece -- every listener of the bridge and of the compatibility servers is
built here, by L{build_listener}.)
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IProtocolNegotiationFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from zope.interface import implementer

from twistbridge._internals import http_switch_channel
from twistbridge.limits import ListenerLimits

__all__ = [
    "ConnectionLimits",
    "ConnectionTracker",
    "ListenError",
    "ListenerService",
    "build_listener",
    "describe_listen_error",
    "format_address",
    "innermost_protocol",
    "unused_listener",
]

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
    """
    A listener could not bind: ends twistd with this one-line message.

    @ivar listener: the listener's name (C{"http"}, C{"igor"}, ...).
    @ivar reason: why, in a few words (C{"port 5020 is already in use"}).
    """

    listener: str = ""
    reason: str = ""


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


# connection limits and tracking -----------------------------------------------


class _Refuse(Protocol):
    """Write the refusal and close."""

    def __init__(self, refusal: bytes) -> None:
        self.refusal = refusal

    def connectionMade(self) -> None:
        assert self.transport is not None  # (set before connectionMade)
        if self.refusal:
            self.transport.write(self.refusal)
        self.transport.loseConnection()


def _peer_host(address: Any) -> str:
    return str(getattr(address, "host", address))


class _ClientWrapper(ProtocolWrapper):
    """A connection that was let in, with the client address it counts for."""

    _twistbridge_host: Optional[str] = None


@implementer(IProtocolNegotiationFactory)
class ConnectionLimits(WrappingFactory):
    """
    Wrap a listener's factory and enforce its L{ListenerLimits}: a
    connection over a limit gets the refusal and is closed at once.

    @ivar limits: the L{ListenerLimits}.
    @ivar max_connections: C{limits.max_connections}.
    @ivar max_connections_per_client: C{limits.max_connections_per_client}.
    @ivar refusal: C{limits.refusal}.
    @ivar per_client: client address to its open connections.
    @ivar refused: connections refused so far.
    """

    protocol = _ClientWrapper

    def __init__(
        self,
        wrapped: Any,
        max_connections: int = 0,
        max_connections_per_client: int = 0,
        refusal: bytes = b"",
        name: str = "",
    ) -> None:
        super().__init__(wrapped)
        self.limits = ListenerLimits(
            max_connections, max_connections_per_client, refusal
        )
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.refusal = refusal
        self.name = name
        self.per_client: Dict[str, int] = {}
        self.refused = 0

    def acceptableProtocols(self) -> List[bytes]:
        """
        The wrapped factory's ALPN protocols: a TLS listener asks the factory
        it wraps, which is this one; without an answer, a client offering
        ALPN (every browser, curl, urllib3) would be refused the handshake.
        """
        negotiating = IProtocolNegotiationFactory(self.wrappedFactory, None)
        return list(negotiating.acceptableProtocols()) if negotiating else []

    def __getattr__(self, name: str) -> Any:
        # Behave like the wrapped factory for everything else (e.g. a Site's
        # attributes read by code that holds the listener's factory).
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.wrappedFactory, name)

    @property
    def open(self) -> int:
        """The number of open connections."""
        return len(self.protocols)

    def buildProtocol(self, addr: Any) -> Any:
        """Build the wrapped protocol, or a refusal when over a limit."""
        host = _peer_host(addr)
        why = self.limits.refusal_reason(
            len(self.protocols), self.per_client.get(host, 0)
        )
        if why is not None:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warn(
                    "{listener}: refused a connection from {host} ({why}; "
                    "{refused} refused so far)",
                    listener=self.name,
                    host=host,
                    why=why,
                    refused=self.refused,
                )
            return _Refuse(self.refusal)
        protocol = super().buildProtocol(addr)
        if isinstance(protocol, _ClientWrapper):
            protocol._twistbridge_host = host
        return protocol

    def registerProtocol(self, p: Any) -> None:
        """Count a connection in."""
        super().registerProtocol(p)
        host = getattr(p, "_twistbridge_host", None)
        if host is not None:
            self.per_client[host] = self.per_client.get(host, 0) + 1

    def unregisterProtocol(self, p: Any) -> None:
        """Count a connection out."""
        super().unregisterProtocol(p)
        host = getattr(p, "_twistbridge_host", None)
        if host is not None:
            left = self.per_client.get(host, 1) - 1
            if left:
                self.per_client[host] = left
            else:
                self.per_client.pop(host, None)


def innermost_protocol(protocol: Any) -> Any:
    """
    The protocol under any L{ProtocolWrapper}s and Twisted's HTTP/1.1-or-2
    switch: an L{HTTPChannel}, or what took the connection over (a WebSocket
    protocol after an upgrade).
    """
    for _ in range(16):
        if isinstance(protocol, ProtocolWrapper):
            protocol = protocol.wrappedProtocol
            continue
        inner = http_switch_channel(protocol)
        if inner is not None:
            protocol = inner
            continue
        break
    return protocol


class ConnectionTracker(ConnectionLimits):
    """
    Wrap a listener's factory, enforce its connection limits
    (L{ConnectionLimits}) and keep every open connection, so that a shutdown
    can wait for them (L{drain_http}) or end them (L{abort_all}).

    The wrapping costs one method call per read and per write.

    @ivar protocols: the open connections (L{WrappingFactory}'s own record).
    """

    noisy = False

    def __init__(self, wrapped: Any, reactor: Any = None, **limits: Any) -> None:
        ConnectionLimits.__init__(self, wrapped, **limits)
        self._reactor = reactor
        self._empty: List[Deferred] = []
        self._watched: Set[int] = set()
        self.draining = False

    def unregisterProtocol(self, p: Any) -> None:
        """A connection went away: fire L{when_empty} waiters once none is left."""
        ConnectionLimits.unregisterProtocol(self, p)
        if not self.protocols:
            waiters, self._empty = self._empty, []
            for d in waiters:
                d.callback(None)

    def when_empty(self) -> Deferred:
        """A L{Deferred} that fires once no connection is open."""
        if not self.protocols:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._empty.append(d)
        return d

    def drain_http(self) -> Deferred:
        """
        Close idle HTTP connections now and the others once the requests in
        them are answered; connections taken over by another protocol (a
        WebSocket) are left to that protocol.  Fires once none is open.
        """
        self.draining = True
        for conn in list(self.protocols):
            self._settle(conn)
        return self.when_empty()

    def _settle(self, conn: Any) -> None:
        if conn not in self.protocols:
            return
        channel = innermost_protocol(conn)
        if not isinstance(channel, HTTPChannel):
            return
        if not channel.requests:
            conn.loseConnection()
            return
        # Answer what is in flight, then close: no further keep-alive request.
        channel.persistent = False
        for request in list(channel.requests):
            if not request.startedWriting:
                request.setHeader(b"connection", b"close")
            if id(request) in self._watched:
                continue
            self._watched.add(id(request))

            def finished(_: Any, conn: Any = conn, key: int = id(request)) -> None:
                self._watched.discard(key)
                self._settle(conn)

            request.notifyFinish().addBoth(finished)

    def abort_all(self) -> int:
        """Abort every open connection; return how many there were."""
        conns = list(self.protocols)
        for conn in conns:
            transport = conn.transport
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                transport.loseConnection()
        return len(conns)


# the listener service ---------------------------------------------------------


@implementer(IStreamServerEndpoint)
class _Endpoint:
    """
    The endpoint of a listener's description, parsed when it is listened on
    (so that a C{systemd:} description reads C{LISTEN_FDS} when the listener
    binds, not when it is built), telling the listener the port it bound
    (the C{IListeningPort} that C{listen}'s L{Deferred} fires with) or why
    it could not.
    """

    def __init__(self, listener: ListenerService, reactor: Any) -> None:
        self._listener = listener
        self._reactor = reactor

    def listen(self, factory: Any) -> Deferred:
        """Listen with C{factory} on the listener's description."""
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        endpoint = serverFromString(reactor, self._listener.description)
        d = endpoint.listen(factory)
        d.addCallbacks(self._listener._bound, self._listener._not_bound)
        return d


class ListenerService(StreamServerEndpointService):
    """
    One listening port, built from an endpoint description (see the
    module's docstring).

    Unlike a plain L{StreamServerEndpointService}, a port that cannot be
    bound raises L{ListenError} from C{privilegedStartService} (or
    C{startService}), and the service can be started again after a stop.

    @ivar description: the endpoint description.
    @ivar factory: what the port listens with: L{connections}.
    @ivar connections: the L{ConnectionTracker} wrapping the protocol
        factory given (e.g. the C{Site}).
    @ivar port: the C{IListeningPort} once bound, else L{None}.
    """

    def __init__(
        self,
        name: str,
        description: str,
        factory: Any,
        reactor: Any = None,
        max_connections: int = 0,
        max_connections_per_client: int = 0,
        refusal: bytes = b"",
    ):
        self.connections = ConnectionTracker(
            factory,
            reactor,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            refusal=refusal,
            name=name,
        )
        StreamServerEndpointService.__init__(
            self, _Endpoint(self, reactor), self.connections
        )
        self.setName(name)
        self.description = description
        self.port: Optional[Any] = None
        self._listening = False
        self._binding = False
        self._failure: Optional[Failure] = None

    def privilegedStartService(self) -> None:
        """Bind now (before twistd drops privileges).

        @raise ListenError: when the port cannot be bound.
        """
        if self._listening:
            return
        self._listening = True
        self._binding = True
        try:
            StreamServerEndpointService.privilegedStartService(self)
        except BaseException:
            self._listening = False  # a description that does not parse
            raise
        finally:
            self._binding = False
        failure, self._failure = self._failure, None
        if failure is not None:
            # A later start tries again; a stop has nothing to stop.
            self._listening = False
            reason = describe_listen_error(failure.value)
            error = ListenError(
                f"twistd bridge: cannot listen for {self.name} on "
                f"{self.description}: {reason}"
            )
            error.listener = self.name or ""
            error.reason = reason
            raise error

    def _bound(self, port: Any) -> Any:
        self.port = port
        log.info(
            "{listener} listening on {address}",
            listener=self.name,
            address=format_address(port.getHost()),
        )
        return port

    def _not_bound(self, failure: Failure) -> None:
        # Handled here, so that StreamServerEndpointService logs no traceback.
        if failure.check(defer.CancelledError):
            return None
        if self._binding:
            self._failure = failure  # raised by privilegedStartService
            return None
        # An endpoint that binds later (not TCP, UNIX or systemd) failed.
        self._listening = False
        log.error(
            "{listener}: cannot listen on {description}: {reason}",
            listener=self.name,
            description=self.description,
            reason=describe_listen_error(failure.value),
        )
        return None

    def startService(self) -> None:
        """Bind if C{privilegedStartService} did not run (adopted by an
        app, or started again after a stop), then start."""
        if not self._listening:
            self.privilegedStartService()
        StreamServerEndpointService.startService(self)

    def stopService(self) -> Deferred:
        """Stop accepting connections (or stop trying to bind)."""
        self.port = None
        if not self._listening:
            Service.stopService(self)
            return defer.succeed(None)
        self._listening = False
        return StreamServerEndpointService.stopService(self)

    def status(self) -> Dict[str, Any]:
        """Whether this listener is up and what it bound."""
        port = self.port
        return {
            "up": port is not None,
            "address": None if port is None else format_address(port.getHost()),
        }


def unused_listener(registry: Any, name: str) -> Optional[str]:
    """
    Why the standalone listener C{name} of a bridge serving C{registry} (a
    L{twistbridge.registry.Registry}) stays closed, or L{None} to open it: the Igor and bgpy ports open only when the app has something for
    that protocol or the port was asked for explicitly.
    """
    if name == "igor" and "igor_port" not in registry.given_settings:
        if not registry.serves_igor():
            return (
                "the app registers no Igor action or process "
                "(give --igor-port to open it anyway)"
            )
    if name == "bgpy" and "bgpy_port" not in registry.given_settings:
        if not registry.serves_bgpy():
            return (
                "the app registers no bgpy tasks, allowed modules or token "
                "(give --bgpy-port to open it anyway)"
            )
    return None


def build_listener(
    name: str,
    description: str,
    factory: Any,
    settings: Any,
    refusal: bytes = b"",
    reactor: Any = None,
) -> ListenerService:
    """
    The L{ListenerService} C{name} for C{factory} on C{description}, with
    the connection limits of C{settings} (a L{twistbridge.config.Settings})
    and C{refusal} for a connection over them.
    """
    limits = ListenerLimits.of(settings, refusal)
    return ListenerService(
        name,
        description,
        factory,
        reactor,
        max_connections=limits.max_connections,
        max_connections_per_client=limits.max_connections_per_client,
        refusal=limits.refusal,
    )
