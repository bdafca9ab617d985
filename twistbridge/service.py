"""
Service assembly: the L{MultiService} that runs a L{twistbridge.Bridge}, and
its graceful shutdown.

    BridgeService
      offload            thread pool + process pool      (started first, stopped last)
      igor, bgpy, ...    protocol services (processes, bgpy init_task)
      listener http      the HTTP Site (izzati, JSON-RPC, /ws, /health)
      listener igor      the standalone Igor WebSocket port
      listener bgpy      the bgpy task port

Listeners (L{twistbridge.listeners}) bind in C{privilegedStartService}, so
twistd's C{-u}/C{-g} drop privileges after binding; each knows its open
connections, so that shutdown can drain and, at the end, abort them.

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
L{EXIT_GRACE} seconds.  A handler's request to stop (an Igor handler raising
C{SystemExit}: L{BridgeService.request_stop}) stops the reactor when the
bridge is the process, else only this service: the host's reactor runs on.

This module is longer than most because the shutdown is one sequence
(stop accepting, drain, bound, abort, stop the pools) whose steps share
its deadline and its force; the listeners themselves are in
L{twistbridge.listeners}.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twistbridge._systemd import SystemdNotifier
from twistbridge.endpoints import listen_description
from twistbridge.limits import HTTP_REFUSAL
from twistbridge.listeners import (  # noqa: F401 (re-exported: the names' old home)
    ConnectionTracker,
    ListenError,
    ListenerService,
    build_listener,
    unused_listener,
)

if TYPE_CHECKING:
    from twistbridge.runtime import Runtime

log = Logger()

#: Seconds the pools get to stop even when draining used up the bound.
POOL_GRACE = 1.0

#: Seconds a forced stop waits for the process to exit before ending it.
EXIT_GRACE = 2.0


def _gather(ds: List[Deferred]) -> Deferred:
    """Fire once every one of C{ds} fired, whatever their results."""
    return defer.DeferredList(ds, consumeErrors=True) if ds else defer.succeed([])


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

    The service, its timers and its listeners run on C{reactor} (the
    global reactor when L{None}): on a C{MemoryReactorClock} the listeners'
    C{listenTCP} is recorded and no socket opens.

    @ivar owns_process: set by C{twistd bridge}: this service is the process
        (it handles SIGTERM/SIGINT and talks to systemd).  An application that
        adopts the service keeps its own signal handling.
    @ivar owns_reactor: set by the compatibility servers' runner: the reactor
        runs for this service alone (as under C{owns_process}), so that
        L{request_stop} stops the reactor.
    @ivar notifier: the L{SystemdNotifier} (C{READY=1}, C{STOPPING=1}, watchdog).
    @ivar listeners: listener name to L{ListenerService}.
    @ivar log_observer: an observer that twistd should log to (set by
        L{twistbridge.logs.configure_logging}); handed to twistd's
        application when this service is parented to it.
    """

    def __init__(self, runtime: Runtime, reactor: Any = None) -> None:
        MultiService.__init__(self)
        # The listeners get the reactor as given: None lets each endpoint
        # take the global reactor when it binds, as it always did.
        listen_reactor = reactor
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.runtime = runtime
        self.setName("twistbridge")
        self.owns_process = False
        self.owns_reactor = False
        self.log_observer: Any = None
        self.notifier = SystemdNotifier(reactor)
        self._stopping: Optional[Deferred] = None
        self._shut_down = False
        self._forced = False
        self._signals = 0
        self._exit_timer: Optional[threading.Thread] = None
        runtime.offloader.setServiceParent(self)
        from twistbridge.bgpy._service import build_services as bgpy_services
        from twistbridge.igor._processes import build_services as igor_services

        igor = igor_services(runtime.igor_hub, runtime.registry.igor_process_objects)
        for svc in [*igor, *bgpy_services(runtime.bgpy)]:
            svc.setServiceParent(self)
        if listen_description(runtime.settings.metrics_port) is not None:
            from twistbridge.metrics import MetricsService

            MetricsService(runtime.metrics).setServiceParent(self)
        self.listeners: Dict[str, ListenerService] = {}
        s = runtime.settings
        for name, description, build, refusal in self._listener_plan():
            if description is None:
                continue
            unused = unused_listener(runtime.registry, name)
            if unused:
                log.info("{name} listener left closed: {why}", name=name, why=unused)
                continue
            listener = build_listener(
                name, description, build(), s, refusal, reactor=listen_reactor
            )
            listener.setServiceParent(self)
            self.listeners[name] = listener

    def _listener_plan(self) -> list:
        from twistbridge.bgpy._service import build_factory as bgpy_factory
        from twistbridge.web import BridgeSite

        def igor_factory(*args: Any) -> Any:
            # (imported when the Igor listener opens: autobahn is most of a
            # bridge's start-up, and a bgpy-only server needs none of it)
            from twistbridge.igor._protocol import build_factory

            return build_factory(*args)

        rt = self.runtime
        s = rt.settings
        reactor = self._reactor
        return [
            # name, description, factory builder, what a refused client gets
            (
                "http",
                listen_description(s.port),
                lambda: BridgeSite(rt.root, s, reactor),
                HTTP_REFUSAL,
            ),
            (
                "igor",
                listen_description(s.igor_port),
                lambda: _hosts(igor_factory(rt.igor_hub, s, reactor), s),
                HTTP_REFUSAL,
            ),
            (
                "bgpy",
                listen_description(s.bgpy_port),
                lambda: bgpy_factory(rt.bgpy),
                b"",
            ),
            (
                "metrics",
                listen_description(s.metrics_port),
                lambda: _metrics_site(rt),
                b"",
            ),
        ]

    def listener_status(self) -> Dict[str, Any]:
        """Each listener's status, for C{/health}."""
        return {name: svc.status() for name, svc in self.listeners.items()}

    def open_connections(self) -> Dict[str, int]:
        """Each listener's open connections (for the metrics)."""
        return {name: svc.connections.open for name, svc in self.listeners.items()}

    def refused_connections(self) -> Dict[str, int]:
        """Each listener's connections refused by its limits so far."""
        return {name: svc.connections.refused for name, svc in self.listeners.items()}

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
        self._shut_down = False
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

    def request_stop(self, why: str) -> None:
        """Stop (C{why}: who asked, for the log): the reactor if the bridge is
        the process (L{owns_process}, L{owns_reactor}), else only this service."""
        if self.owns_process or self.owns_reactor:
            log.info("{why}: stopping", why=why)
            self._stop_reactor()
            return
        if not self.running:
            return
        log.info("{why}: stopping the bridge's service", why=why)
        self.stopService()

    # shutdown ------------------------------------------------------------

    def stopService(self) -> Deferred:
        """
        Stop accepting, drain within C{shutdown_timeout}, stop the pools.
        The L{Deferred} fires when done, or at once after L{force}.  Once
        stopped (after L{request_stop}, say), stopping again does nothing.
        """
        if self._stopping is None and self._shut_down and not self.running:
            return defer.succeed(None)
        if self._stopping is None:
            self._stopping = Deferred()
            d = defer.ensureDeferred(self._shutdown())
            d.addErrback(lambda f: log.failure("shutdown failed", f))
            d.addBoth(lambda _: self._stopped())
        result: Deferred = Deferred()

        def relay(outcome: Any) -> Any:
            result.callback(None)
            return outcome

        self._stopping.addBoth(relay)
        return result

    def _stopped(self) -> None:
        self._shut_down = True
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

        def drained(_: Any) -> None:
            done(True)

        def stopping(outcome: Any) -> Any:
            done(False)
            return outcome

        d.addBoth(drained)
        assert self._stopping is not None
        self._stopping.addBoth(stopping)
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


def _metrics_site(runtime: Runtime) -> Any:
    """The site of the metrics listener (prometheus_client is imported only
    by a bridge that has one)."""
    from twistbridge.metrics import metrics_site

    return metrics_site(runtime.metrics)
