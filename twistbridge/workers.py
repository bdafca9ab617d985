"""
C{twistd bridge --workers N}: N reactor processes sharing the listening
sockets, so that the stateless protocols (izzati, JSON-RPC) use N cores.

The process that C{twistd} starts becomes the supervisor
(L{WorkersService}).  It binds every listener the app uses once (or takes
the sockets systemd passed it), then starts N workers: C{twistd bridge}
again, each receiving the sockets the way systemd's socket activation
hands them over (C{LISTEN_FDS}, C{LISTEN_FDNAMES}), so each worker's
listeners adopt them and the kernel spreads the connections among the
workers.  The supervisor serves nothing itself.

  - A worker that exits while the supervisor runs is logged once, with its
    exit status, and replaced; one that dies soon after it started is
    replaced after a delay that doubles up to L{MAX_BACKOFF}, so that a
    crash loop does not spin.
  - SIGTERM or SIGINT to the supervisor is passed on to every worker, each
    of which drains as a single process does (C{--shutdown-timeout}); the
    supervisor exits once they all did (a worker still running past the
    bound and a grace is killed).  A second signal is passed on too: it
    forces the workers' exit.
  - The workers share Igor clients, sessions and processes and the bgpy
    state through the C{broker}: C{--workers} above 1 needs one
    (L{refuse_reason}).

Each worker runs with C{TWISTBRIDGE_WORKER} set to its number (from 1), so
that it serves instead of supervising again, and C{/health} names it.

(Over 400 lines: the shared sockets, the workers' lives and their shutdown
are one supervisor, and C{twistd bridge} only hooks it in.)
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any, Dict, List, Mapping, Optional, Sequence

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from twistbridge._systemd import SystemdNotifier
from twistbridge.config import WORKER_ENV
from twistbridge.endpoints import listen_description
from twistbridge.reload import (
    RELOAD_LISTENERS_ENV,
    ReloadError,
    bind,
    bridge_options,
    parse_tcp,
    spawn_child,
)

__all__ = [
    "WorkersError",
    "WorkersService",
    "listening_socket",
    "refuse_reason",
    "startup_refusal",
    "supervises",
    "worker_arguments",
    "workers_service",
]

log = Logger()

#: The listeners, by name, setting and option, in the order of their sockets.
LISTENERS = (
    ("http", "port", "--port"),
    ("igor", "igor_port", "--igor-port"),
    ("bgpy", "bgpy_port", "--bgpy-port"),
    ("metrics", "metrics_port", "--metrics-port"),
)

#: Seconds a worker must have run for its death to restart it at once.
STABLE_AFTER = 10.0

#: The first and the longest delay before replacing a worker that died young.
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0

#: Seconds past the shutdown bound before a worker still running is killed.
KILL_GRACE = 5.0

_WITH_VALUE = {option for _, _, option in LISTENERS} | {"-p", "--workers"}


class WorkersError(Exception):
    """The workers cannot run as asked (a one-line reason)."""


def refuse_reason(settings: Any, reload: bool = False) -> Optional[str]:
    """
    Why C{settings.workers} cannot run, or L{None}.

    Above 1 the workers need a shared broker: each is a process of its own,
    and the in-process broker cannot share Igor clients, sessions and
    processes or the bgpy state between them.
    """
    workers = settings.workers
    if workers <= 1:
        return None
    if reload:
        return (
            f"--workers {workers}: --reload runs one server; "
            "leave out --workers (or --reload)"
        )
    if settings.broker is None:
        return (
            f"--workers {workers} needs a shared broker: add --broker "
            "redis://host:port/db (the workers share Igor clients, sessions, "
            "processes and the bgpy state through it; see docs/scaling.rst)"
        )
    return None


def startup_refusal(settings: Any, reload: bool = False) -> Optional[str]:
    """L{refuse_reason}, except in a worker (which serves as it is told)."""
    if os.environ.get(WORKER_ENV):
        return None
    return refuse_reason(settings, reload)


def supervises(settings: Any) -> bool:
    """Whether this process is to be the supervisor of C{settings.workers}."""
    return settings.workers > 1 and not os.environ.get(WORKER_ENV)


def workers_service(bridge: Any, argv: Sequence[str], twistd_options: Any) -> Any:
    """
    The supervisor of C{bridge} (a L{twistbridge.Bridge}) under C{twistd}
    started with C{argv}, logging as the bridge would.

    @raise WorkersError: when a listener cannot be shared.
    """
    from twistbridge.listeners import unused_listener
    from twistbridge.logs import configure_logging

    relay = False
    if twistd_options is not None:
        # The supervisor logs elsewhere than to its stdout: so do the workers.
        logfile = twistd_options.get("logfile")
        relay = not twistd_options["nodaemon"] or bool(logfile and logfile != "-")
        relay = relay or bool(twistd_options.get("syslog"))
    closed = [name for name, _, _ in LISTENERS if unused_listener(bridge, name)]
    service = WorkersService(bridge.settings, argv, closed, relay=relay)
    configure_logging(bridge.settings, service, twistd_options)
    return service


def worker_arguments(argv: Sequence[str], passed: Mapping[str, str]) -> List[str]:
    """
    The C{bridge} options of a worker: those of C{argv} (everything after
    the C{bridge} subcommand) without C{--workers} and the listener options,
    then every listener as C{passed} gives it (the passed socket's
    description), or C{none}.
    """
    kept = bridge_options(argv, (), _WITH_VALUE)
    for name, _, option in LISTENERS:
        kept += [option, passed.get(name, "none")]
    return kept


def _passed_socket(option: str, description: str, reactor: Any) -> socket.socket:
    """
    The socket systemd passed for a C{systemd:} description, found by
    Twisted's own parser of those descriptions (which reads C{LISTEN_FDS}
    once, and then removes it from the environment).
    """
    from twisted.internet.endpoints import serverFromString

    if reactor is None:
        from twisted.internet import reactor
    try:
        endpoint = serverFromString(reactor, description)
        fileno = endpoint.fileno  # an AdoptedStreamServerEndpoint
    except Exception:
        raise WorkersError(
            f"{option} {description}: systemd passed no such socket; start "
            "the service through its .socket unit"
        ) from None
    sock = socket.socket(fileno=os.dup(fileno))
    sock.set_inheritable(True)
    return sock


def _unix_socket(option: str, description: str) -> socket.socket:
    path = description.partition(":")[2].split(":")[0].replace("\\:", ":")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.exists(path) and not os.path.isdir(path):
            os.unlink(path)  # a stale socket file, as Twisted's unix: does
        sock.bind(path)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise WorkersError(f"{option} {description}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def listening_socket(
    option: str, value: Any, reactor: Any = None
) -> Optional[socket.socket]:
    """
    The listening socket of one listener setting, bound here (C{tcp:},
    C{tcp6:}, C{unix:}, a port number) or taken from systemd (C{systemd:});
    L{None} for C{none}.

    @raise WorkersError: for another kind of endpoint, or one that cannot
        be bound, in one line.
    """
    description = listen_description(value)
    if description is None:
        return None
    kind = description.partition(":")[0]
    if kind == "systemd":
        return _passed_socket(option, description, reactor)
    if kind == "unix":
        return _unix_socket(option, description)
    if kind not in ("tcp", "tcp6"):
        raise WorkersError(
            f"{option} {value}: --workers shares tcp:, tcp6:, unix: and "
            "systemd: listeners (terminate TLS in front of the bridge)"
        )
    try:
        address = parse_tcp(option, value, reactor)
        assert address is not None
        return bind(option, *address)
    except ReloadError as e:
        raise WorkersError(str(e)) from None


def _domain(sock: socket.socket) -> str:
    return {socket.AF_INET6: "INET6", socket.AF_UNIX: "UNIX"}.get(sock.family, "INET")


class _Worker(protocol.ProcessProtocol):
    """One worker process; C{ended} fires with its exit status."""

    def __init__(self, index: int, started: float) -> None:
        self.index = index
        self.pid: Optional[int] = None
        self.started = started
        self.ended: Deferred = Deferred()
        self._partial = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        # With relay: the worker's output, into the supervisor's log.
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            log.info(
                "worker {index}: {line}",
                index=self.index,
                line=line.decode("utf-8", "replace"),
            )

    def processEnded(self, reason: Any) -> None:
        status = getattr(reason.value, "exitCode", None)
        if status is None:
            status = -(getattr(reason.value, "signal", None) or 0)
        self.ended.callback(status)


class WorkersService(Service):
    """
    The supervisor of C{--workers}: owns the listening sockets and keeps
    C{settings.workers} worker processes running (see the module's
    docstring).

    @ivar sockets: listener name to its listening socket (the listeners the
        app uses).
    @ivar workers: worker number (from 1) to the running L{_Worker}.
    @ivar log_observer: an observer twistd should log to (set by
        L{twistbridge.logs.configure_logging}).

    @param closed: the listeners the app leaves closed (not bound).
    @param relay: pass the workers' output on through the supervisor's log
        (when it logs elsewhere than to its stdout: daemon mode,
        C{--logfile}, C{--syslog}); else they write to the same stdout.
    @param environ: the environment the workers' is made from.
    """

    def __init__(
        self,
        settings: Any,
        argv: Sequence[str],
        closed: Sequence[str] = (),
        relay: bool = False,
        reactor: Any = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.setName("twistbridge-workers")
        self.log_observer: Any = None
        self.count = settings.workers
        self._shutdown_timeout = float(settings.shutdown_timeout)
        self._argv = list(argv)
        self._relay = relay
        self._environ = dict(os.environ if environ is None else environ)
        self.sockets: Dict[str, socket.socket] = {}
        try:
            for name, setting, option in LISTENERS:
                if name in closed:
                    continue
                sock = listening_socket(option, getattr(settings, setting), reactor)
                if sock is not None:
                    self.sockets[name] = sock
        except WorkersError:
            self._close_sockets()
            raise
        self.workers: Dict[int, _Worker] = {}
        self._transports: Dict[int, Any] = {}
        self._backoff: Dict[int, float] = {}
        self._pending: Dict[int, Any] = {}
        self._stopping = False
        self._signals = 0
        self.notifier = SystemdNotifier(reactor, self._environ)

    # twistd -------------------------------------------------------------

    def setServiceParent(self, parent: Any) -> None:
        """Join C{parent}, handing twistd the log observer (as the bridge does)."""
        if self.log_observer is not None:
            from twisted.logger import ILogObserver
            from twisted.python.components import Componentized

            if isinstance(parent, Componentized):
                parent.setComponent(ILogObserver, self.log_observer)
        Service.setServiceParent(self, parent)

    def startService(self) -> None:
        """Start every worker; take over SIGTERM and SIGINT."""
        Service.startService(self)
        log.info(
            "workers: starting {n} worker processes sharing {listeners}",
            n=self.count,
            listeners=", ".join(
                f"{name} {_address(sock)}" for name, sock in self.sockets.items()
            ),
        )
        for index in range(1, self.count + 1):
            self._spawn(index)
        self._reactor.callWhenRunning(self._running)

    def _running(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.notifier.ready(f"{self.count} workers")

    def _on_signal(self, signum: int, frame: Any = None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info(
                "Received {signal}: stopping the {n} workers (each drains for "
                "up to {timeout}s)",
                signal=name,
                n=len(self.workers),
                timeout=self._shutdown_timeout,
            )
            self._reactor.callFromThread(self._stop_reactor)
        else:
            log.warn("Received {signal} again: forcing the workers' exit", signal=name)
            self._reactor.callFromThread(self._signal_all, signal.SIGTERM)

    def _stop_reactor(self) -> None:
        if self._reactor.running:
            self._reactor.stop()

    # the workers ----------------------------------------------------------

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        env = dict(self._environ)
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
            env.pop(key, None)
        for key in ("WATCHDOG_USEC", "WATCHDOG_PID", RELOAD_LISTENERS_ENV):
            env.pop(key, None)
        env[WORKER_ENV] = str(index)
        passed = {
            name: f"systemd:domain={_domain(sock)}:name={name}"
            for name, sock in self.sockets.items()
        }
        worker = _Worker(index, self._reactor.seconds())
        self.workers[index] = worker
        self._transports[index] = spawn_child(
            self._reactor,
            worker,
            self.sockets,
            worker_arguments(self._argv, passed),
            env,
            output="r" if self._relay else None,
        )
        log.info(
            "workers: worker {index} started (pid {pid})", index=index, pid=worker.pid
        )
        worker.ended.addCallback(self._ended, worker)

    def _ended(self, status: int, worker: _Worker) -> int:
        index = worker.index
        if self.workers.get(index) is worker:
            del self.workers[index]
            self._transports.pop(index, None)
        if self._stopping:
            return status
        lived = self._reactor.seconds() - worker.started
        if lived >= STABLE_AFTER:
            delay = 0.0
            self._backoff.pop(index, None)
        else:
            delay = min(MAX_BACKOFF, self._backoff.get(index, MIN_BACKOFF / 2) * 2)
            self._backoff[index] = delay
        log.warn(
            "workers: worker {index} (pid {pid}) exited with status {status} "
            "after {lived:.1f}s; starting a new one{when}",
            index=index,
            pid=worker.pid,
            status=status,
            lived=lived,
            when=f" in {delay:g}s" if delay else "",
        )
        self._pending[index] = self._reactor.callLater(delay, self._spawn, index)
        return status

    def pids(self) -> List[int]:
        """The process ids of the running workers."""
        return [w.pid for w in self.workers.values() if w.pid is not None]

    def _signal_all(self, signum: int) -> None:
        for transport in list(self._transports.values()):
            try:
                transport.signalProcess(signum)
            except (error.ProcessExitedAlready, OSError):
                pass

    # shutdown ------------------------------------------------------------

    def stopService(self) -> Deferred:
        """
        Pass SIGTERM on to every worker and fire once all exited (killing
        those still running past C{shutdown_timeout} and L{KILL_GRACE}).
        """
        Service.stopService(self)
        self._stopping = True
        self.notifier.stopping()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        running = [w.ended for w in self.workers.values()]
        if not running:
            self._close_sockets()
            return defer.succeed(None)
        self._signal_all(signal.SIGTERM)
        timer = self._reactor.callLater(
            self._shutdown_timeout + KILL_GRACE, self._kill_left
        )

        def ended(results: Any) -> None:
            if timer.active():
                timer.cancel()
            self._close_sockets()
            log.info("workers: every worker exited")

        return defer.DeferredList(running, consumeErrors=True).addCallback(ended)

    def _kill_left(self) -> None:
        log.warn(
            "workers: {n} worker(s) still running past the shutdown bound: killing",
            n=len(self.workers),
        )
        self._signal_all(signal.SIGKILL)

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():
            sock.close()


def _address(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(name)
