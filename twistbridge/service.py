"""
Service assembly: the L{MultiService} that runs a L{twistbridge.Bridge}, and
its graceful shutdown.

    BridgeService
      offload            thread pool + process pool      (started first, stopped last)
      igor, bgpy, ...    protocol services (processes, bgpy init_task)
      listener http      the HTTP Site (izzati, JSON-RPC, /ws, /health)
      listener igor      the standalone Igor WebSocket port
      listener bgpy      the bgpy task port

Listeners are built from endpoint descriptions (C{serverFromString}) and bind
in C{privilegedStartService}, so twistd's C{-u}/C{-g} drop privileges after
binding.  Each listener's factory is wrapped in a L{ConnectionTracker}, which
knows every open connection so that shutdown can drain and, at the end,
abort them.

Shutdown (L{BridgeService.stopService}, run by twistd on SIGTERM) is bounded
by C{settings.shutdown_timeout} and goes in this order:

    1. C{STOPPING=1} to systemd; every listener stops accepting.
    2. Drain, all at once, until done or the deadline:
       - HTTP: idle keep-alive connections are closed now; a connection with
         a request in flight is closed once its response is complete;
       - each protocol service (every child that is neither a listener nor
         the offloader): its optional C{drain()} is called first, then its
         C{stopService()}.  This is the drain contract of protocol services:
         C{drain() -> Deferred} finishes the work in hand (streams, running
         tasks) without starting new work; C{stopService() -> Deferred}
         releases what the service holds (Igor closes its WebSockets with
         1001 "going away", bgpy runs C{exit_task} if initialized).  Both run
         while the offloader's pools still work, and neither is waited for
         past the deadline.
    3. Past the deadline, every connection still open is aborted.
    4. The offloader stops the thread and process pools (given at least
       L{POOL_GRACE} seconds even when draining used up the bound).

Under twistd (L{BridgeService.owns_process}), SIGTERM and SIGINT start that
shutdown; a second one forces the exit at once.  A process that still has
busy handler threads after a forced stop exits anyway (status 0) after
L{EXIT_GRACE} seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import HTTPChannel

from twistbridge._systemd import SystemdNotifier
from twistbridge.config import listen_description
from twistbridge.limits import HTTP_REFUSAL, ConnectionLimits

if TYPE_CHECKING:
    from twistbridge.registry import Registry
    from twistbridge.runtime import Runtime

log = Logger()

#: Seconds the pools get to stop even when draining used up the bound.
POOL_GRACE = 1.0

#: Seconds a forced stop waits for the process to exit before ending it.
EXIT_GRACE = 2.0


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


class ListenerService(Service):
    """
    One listening port, built from an endpoint description.

    @ivar description: the endpoint description.
    @ivar factory: the protocol factory (e.g. the L{Site}).
    @ivar connections: the L{ConnectionTracker} wrapping C{factory}: what the
        port really listens with.
    @ivar port: the L{IListeningPort} once bound.
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
        self.setName(name)
        self.description = description
        self.factory = factory
        self.connections = ConnectionTracker(
            factory,
            reactor,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            refusal=refusal,
            name=name,
        )
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
        d = endpoint.listen(self.connections)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0].value
            error = ListenError(
                f"twistd bridge: cannot listen for {self.name} on "
                f"{self.description}: {describe_listen_error(reason)}"
            )
            error.listener = self.name
            error.reason = describe_listen_error(reason)
            raise error

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


def innermost_protocol(protocol: Any) -> Any:
    """
    The protocol under any L{ProtocolWrapper}s and Twisted's HTTP/1.1-or-2
    switch (C{_GenericHTTPChannelProtocol}): an L{HTTPChannel}, or what took
    the connection over (a WebSocket protocol after an upgrade).
    """
    for _ in range(16):
        if isinstance(protocol, ProtocolWrapper):
            protocol = protocol.wrappedProtocol
            continue
        inner = getattr(protocol, "_channel", None)
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


def _gather(ds: List[Deferred]) -> Deferred:
    """Fire once every one of C{ds} fired, whatever their results."""
    return defer.DeferredList(ds, consumeErrors=True) if ds else defer.succeed([])


def unused_listener(registry: Registry, name: str) -> Optional[str]:
    """
    Why the standalone listener C{name} stays closed, or L{None} to open
    it: the Igor and bgpy ports open only when the app has something for
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


def _hosts(factory: Any, settings: Any) -> Any:
    """C{factory} (the standalone Igor port's), checking the C{Host} of
    every handshake against C{settings.allowed_host}."""
    factory.allowed_host = tuple(settings.allowed_host)
    return factory


class BridgeService(MultiService):
    """
    Everything a L{Bridge} serves, as one service, with a graceful, bounded
    shutdown (see the module's docstring for the order and the C{drain()}
    contract of protocol services).

    @ivar owns_process: set by C{twistd bridge}: this service is the process
        (it handles SIGTERM/SIGINT and talks to systemd).  An application that
        adopts the service keeps its own signal handling.
    @ivar notifier: the L{SystemdNotifier} (C{READY=1}, C{STOPPING=1}, watchdog).
    @ivar listeners: listener name to L{ListenerService}.
    @ivar log_observer: an observer that twistd should log to (set by
        L{twistbridge.logs.configure_logging}); handed to twistd's
        application when this service is parented to it.
    """

    def __init__(self, runtime: Runtime, reactor: Any = None) -> None:
        MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.runtime = runtime
        self.setName("twistbridge")
        self.owns_process = False
        self.log_observer: Any = None
        self.notifier = SystemdNotifier(reactor)
        self._stopping: Optional[Deferred] = None
        self._forced = False
        self._signals = 0
        self._exit_timer: Optional[threading.Thread] = None
        runtime.offloader.setServiceParent(self)
        from twistbridge.bgpy._protocol import build_services as bgpy_services
        from twistbridge.igor._protocol import build_services as igor_services

        igor = igor_services(runtime.igor_hub, runtime.registry.igor_process_objects)
        for svc in [*igor, *bgpy_services(runtime.bgpy)]:
            svc.setServiceParent(self)
        self.listeners: Dict[str, ListenerService] = {}
        s = runtime.settings
        for name, description, build, refusal in self._listener_plan():
            if description is None:
                continue
            unused = unused_listener(runtime.registry, name)
            if unused:
                log.info("{name} listener left closed: {why}", name=name, why=unused)
                continue
            listener = ListenerService(
                name,
                description,
                build(),
                max_connections=s.max_connections,
                max_connections_per_client=s.max_connections_per_client,
                refusal=refusal,
            )
            listener.setServiceParent(self)
            self.listeners[name] = listener

    def _listener_plan(self) -> list:
        from twistbridge.bgpy._protocol import build_factory as bgpy_factory
        from twistbridge.igor._protocol import build_factory as igor_factory
        from twistbridge.web import BridgeSite

        rt = self.runtime
        s = rt.settings
        return [
            # name, description, factory builder, what a refused client gets
            (
                "http",
                listen_description(s.port),
                lambda: BridgeSite(rt.root, s),
                HTTP_REFUSAL,
            ),
            (
                "igor",
                listen_description(s.igor_port),
                lambda: _hosts(igor_factory(rt.igor_hub, s), s),
                HTTP_REFUSAL,
            ),
            (
                "bgpy",
                listen_description(s.bgpy_port),
                lambda: bgpy_factory(rt.bgpy),
                b"",
            ),
        ]

    def listener_status(self) -> Dict[str, Any]:
        """Each listener's status, for C{/health}."""
        return {name: svc.status() for name, svc in self.listeners.items()}

    def protocol_services(self) -> List[Any]:
        """The children that are neither listeners nor the offloader."""
        listeners = set(map(id, self.listeners.values()))
        offloader = self.runtime.offloader
        return [s for s in self if id(s) not in listeners and s is not offloader]

    # twistd -------------------------------------------------------------

    def setServiceParent(self, parent: Any) -> None:
        """
        Join C{parent}; when it is twistd's application and a log observer
        was configured, hand it over (twistd logs to an application's
        C{ILogObserver} component).
        """
        if self.log_observer is not None:
            from twisted.logger import ILogObserver
            from twisted.python.components import Componentized

            if isinstance(parent, Componentized):
                parent.setComponent(ILogObserver, self.log_observer)
        MultiService.setServiceParent(self, parent)

    def startService(self) -> None:
        """Start everything; under twistd, then take over signals and notify."""
        MultiService.startService(self)
        if self.owns_process:
            self._reactor.callWhenRunning(self._running)

    def _running(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        if all(svc.port is not None for svc in self.listeners.values()):
            addresses = ", ".join(
                f"{name} {svc.status()['address']}"
                for name, svc in self.listeners.items()
            )
            self.notifier.ready(f"serving {addresses}" if addresses else "serving")

    def _on_signal(self, signum: int, frame: Any = None) -> None:
        name = signal.Signals(signum).name
        self._signals += 1
        if self._signals == 1:
            log.info(
                "Received {signal}: shutting down (draining for up to {timeout}s; "
                "send it again to stop at once)",
                signal=name,
                timeout=self.runtime.settings.shutdown_timeout,
            )
            self._reactor.callFromThread(self._stop_reactor)
        else:
            log.warn("Received {signal} again: forcing the exit", signal=name)
            self._reactor.callFromThread(self.force)

    def _stop_reactor(self) -> None:
        if self._reactor.running:
            self._reactor.stop()

    # shutdown ------------------------------------------------------------

    def stopService(self) -> Deferred:
        """
        Stop accepting, drain within C{shutdown_timeout}, stop the pools.
        The L{Deferred} fires when done, or at once after L{force}.
        """
        if self._stopping is None:
            self._stopping = Deferred()
            d = defer.ensureDeferred(self._shutdown())
            d.addErrback(lambda f: log.failure("shutdown failed", f))
            d.addBoth(lambda _: self._stopped())
        result: Deferred = Deferred()
        self._stopping.addBoth(lambda r: (result.callback(None), r)[1])
        return result

    def _stopped(self) -> None:
        stopping, self._stopping = self._stopping, None
        if stopping is not None and not stopping.called:
            stopping.callback(None)

    def force(self) -> None:
        """
        Stop now: abort every connection and let the process exit, whatever
        is still running (the second SIGTERM).
        """
        if self._forced:
            return
        self._forced = True
        aborted = sum(svc.connections.abort_all() for svc in self.listeners.values())
        if aborted:
            log.warn("aborted {n} open connection(s)", n=aborted)
        if self._stopping is None:
            # Not stopping yet: stop the reactor, which stops the service.
            self._stop_reactor()
            return
        # Ask the pools to stop (process pool workers are told to exit) but
        # wait for nothing.
        offloader = self.runtime.offloader
        if offloader.running:
            defer.maybeDeferred(offloader.stopService).addErrback(
                lambda f: log.failure("stopping the pools failed", f)
            )
        stopping = self._stopping
        if not stopping.called:
            stopping.callback(None)
        self._exit_soon()

    def _exit_soon(self) -> None:
        # Threads still running a handler would keep the interpreter from
        # exiting once the reactor stopped: end the process after a grace.
        if not self.owns_process or self._exit_timer is not None:
            return

        def exit_later() -> None:
            time.sleep(EXIT_GRACE)  # the grace itself, on a daemon thread
            os._exit(0)

        self._exit_timer = threading.Thread(
            target=exit_later, name="twistbridge-exit", daemon=True
        )
        self._exit_timer.start()

    def _within(self, d: Deferred, deadline: float) -> Deferred:
        """
        Fire with C{True} when C{d} fires before C{deadline} (reactor time),
        with C{False} when the deadline or L{force} comes first.
        """
        result: Deferred = Deferred()

        def done(outcome: bool) -> None:
            if not result.called:
                if timer.active():
                    timer.cancel()
                result.callback(outcome)

        timer = self._reactor.callLater(
            max(0.0, deadline - self._reactor.seconds()), done, False
        )
        d.addBoth(lambda r: (done(True), None)[1])
        assert self._stopping is not None
        self._stopping.addBoth(lambda r: (done(False), r)[1])
        return result

    async def _shutdown(self) -> None:
        Service.stopService(self)
        timeout = self.runtime.settings.shutdown_timeout
        deadline = self._reactor.seconds() + timeout
        if self.owns_process:
            self.notifier.stopping()
        listeners = list(self.listeners.values())
        await _gather([defer.maybeDeferred(svc.stopService) for svc in listeners])
        log.info("stopped accepting: draining for up to {timeout}s", timeout=timeout)

        work = [
            svc.connections.drain_http()
            for name, svc in self.listeners.items()
            if name == "http"
        ]
        work += [self._drain_service(svc) for svc in reversed(self.protocol_services())]
        drained = await self._within(_gather(work), deadline)
        if not drained and not self._forced:
            open_ = {
                name: len(svc.connections.protocols)
                for name, svc in self.listeners.items()
            }
            log.warn(
                "still busy after {timeout}s (open connections: {open}): stopping anyway",
                timeout=timeout,
                open=open_,
            )
            for svc in listeners:
                svc.connections.abort_all()
        if self._forced:
            return
        offloader = self.runtime.offloader
        pools_deadline = max(deadline, self._reactor.seconds() + POOL_GRACE)
        grace = max(0.0, pools_deadline - self._reactor.seconds())
        stopped = await self._within(
            defer.maybeDeferred(offloader.stop, grace), pools_deadline
        )
        if not stopped:
            log.warn("handlers still running after the shutdown bound: exiting anyway")
            self._exit_soon()
        elif not drained:
            self._exit_soon()
        log.info("shutdown complete")

    def _drain_service(self, svc: Any) -> Deferred:
        async def drain_then_stop() -> None:
            drain = getattr(svc, "drain", None)
            if drain is not None:
                try:
                    await defer.maybeDeferred(drain)
                except Exception:
                    log.failure("draining {service} failed", service=svc.name)
            if svc.running:
                await defer.maybeDeferred(svc.stopService)

        return defer.ensureDeferred(drain_then_stop())
