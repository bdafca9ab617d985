"""
C{twistd -n bridge --reload}: a development server that restarts itself when
the app's files change.

The process that C{twistd} starts becomes a small supervisor
(L{ReloadService}).  It binds the listening sockets itself, once, and starts
the real server as a child process that receives them the way systemd's
socket activation hands them over (C{LISTEN_FDS}, C{LISTEN_FDNAMES}), so
the ports stay open across restarts: a client that connects while the
server restarts waits in the socket's backlog instead of being refused.
The supervisor never imports the app, so an app that does not even compile
only costs a child that exits with its one-line error; the supervisor shows
it and waits for the next save.

Files are watched by polling their modification time and size twice a
second: no extra dependency, and it works on every file system, editors
that replace files on save included.

(Over 400 lines: the sockets it binds, the child it starts with them and the
watch of the app's files are one supervisor; C{--workers} starts its
children with the same L{spawn_child}.)
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twistbridge.endpoints import listen_description

log = Logger()

#: The listeners, in the order their sockets are passed (fd 3, 4, 5).
LISTENERS = (("http", "--port"), ("igor", "--igor-port"), ("bgpy", "--bgpy-port"))

_STRIPPED = {"--reload"}

#: How the supervisor tells its child which sockets it passed for listeners
#: that were not given on the command line.
RELOAD_LISTENERS_ENV = "TWISTBRIDGE_RELOAD_LISTENERS"

#: Set in the child's environment: it serves, it does not supervise again
#: (an app built with C{Bridge(reload=True)} would otherwise recurse).
RELOAD_CHILD_ENV = "TWISTBRIDGE_RELOAD_CHILD"
_WITH_VALUE = {option for _, option in LISTENERS} | {"-p"}


class ReloadError(Exception):
    """The development server cannot run as asked (a one-line reason)."""


def refuse_reason(nodaemon: bool, environ: Dict[str, str]) -> Optional[str]:
    """
    Why C{--reload} may not run here, or L{None}: it is for a developer's
    terminal, never for a daemon or a systemd service.
    """
    if not nodaemon:
        return (
            "--reload is for development: run it in the foreground "
            "(twistd -n bridge --reload ...)"
        )
    for name in ("NOTIFY_SOCKET", "LISTEN_FDS", "INVOCATION_ID"):
        if environ.get(name):
            return (
                f"--reload is for development and is refused under systemd "
                f"({name} is set): run the service without --reload"
            )
    return None


def parse_tcp(
    option: str, value: Any, reactor: Any = None
) -> Optional[Tuple[str, int]]:
    """
    The (interface, port) a listener setting binds, or L{None} for C{none}.

    The description is read by Twisted's own parser (C{serverFromString}),
    so that its escapes hold: C{tcp6:5020:interface=\\:\\:1} binds C{::1}.

    @param reactor: the reactor of the endpoint built to read it (nothing
        listens; L{None}: the global one).
    @raise ReloadError: for anything but a port number or a C{tcp:} /
        C{tcp6:} description, which are what a development server needs.
    """
    from twisted.internet.endpoints import serverFromString

    from twistbridge._internals import tcp_endpoint_address

    try:
        description = listen_description(value)
    except ValueError:
        raise ReloadError(f"{option} {value}: a port number is 0-65535") from None
    if description is None:
        return None
    kind = description.partition(":")[0]
    if kind not in ("tcp", "tcp6"):
        raise ReloadError(
            f"{option} {value}: --reload serves TCP listeners only "
            f"(a port number or tcp:PORT:interface=ADDRESS)"
        )
    if reactor is None:
        from twisted.internet import reactor
    try:
        address = tcp_endpoint_address(serverFromString(reactor, description))
    except Exception as e:
        raise ReloadError(
            f"{option} {value}: not a TCP listener description ({e}); "
            f"write tcp:PORT:interface=ADDRESS"
        ) from None
    if address is None or not 0 <= address[1] <= 65535:
        raise ReloadError(f"{option} {value}: a port number is 0-65535")
    return address


def bind(option: str, interface: str, port: int) -> socket.socket:
    """A listening socket on C{interface:port}, or a one-line L{ReloadError}."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        reason = (
            "is already in use" if e.errno == 98 else f"cannot be bound ({e.strerror})"
        )
        raise ReloadError(
            f"{option}: port {port} on {interface or '*'} {reason}; "
            f"choose another with {option} PORT"
        ) from None
    sock.set_inheritable(True)
    return sock


def bridge_options(
    argv: Sequence[str], flags: Iterable[str], with_value: Iterable[str]
) -> List[str]:
    """
    The options of C{argv} after its C{bridge} subcommand, without the
    C{flags} and without the options in C{with_value} and their values
    (C{--opt value} or C{--opt=value}).
    """
    flags, with_value = set(flags), set(with_value)
    args = list(argv)
    rest = args[args.index("bridge") + 1 :] if "bridge" in args else []
    kept: List[str] = []
    skip = False
    for arg in rest:
        if skip:
            skip = False
            continue
        if arg in flags:
            continue
        if arg in with_value:
            skip = True
            continue
        if any(arg.startswith(o + "=") for o in with_value if o.startswith("--")):
            continue
        kept.append(arg)
    return kept


def child_arguments(
    argv: Sequence[str], domains: Dict[str, str], explicit: Iterable[str]
) -> List[str]:
    """
    The C{bridge} options of the child: those of C{argv} (everything after
    the C{bridge} subcommand) without C{--reload} and the listener options,
    then each listener in C{explicit} as the passed socket of that name,
    C{domains} giving its address family (C{INET}, C{INET6}), or C{none}.
    """
    kept = bridge_options(argv, _STRIPPED, _WITH_VALUE)
    for name, option in LISTENERS:
        if name in explicit:
            kept += [option, passed_socket(name, domains)]
    return kept


def passed_socket(name: str, domains: Dict[str, str]) -> str:
    """The listener setting of the child for the passed socket C{name}."""
    domain = domains.get(name)
    return f"systemd:domain={domain}:name={name}" if domain else "none"


def implicit_listeners(explicit: Iterable[str], domains: Dict[str, str]) -> str:
    """
    The value of L{RELOAD_LISTENERS_ENV}: the listeners not given on the
    command line, as C{name=setting} pairs.  The child applies them without
    counting them as given, so a protocol the app does not use keeps its
    port closed, as without C{--reload}.
    """
    return ",".join(
        f"{name}={passed_socket(name, domains)}"
        for name, _ in LISTENERS
        if name not in explicit
    )


def apply_implicit_listeners(bridge: Any, environ: Dict[str, str]) -> None:
    """In the child: take the passed sockets of L{implicit_listeners}."""
    value = environ.get(RELOAD_LISTENERS_ENV)
    if not value:
        return
    changes = {}
    for item in value.split(","):
        name, _, setting = item.partition("=")
        changes["port" if name == "http" else f"{name}_port"] = setting
    bridge.settings = bridge.settings.updated(**changes)


def watched_files(app: Optional[str]) -> List[str]:
    """
    The files whose change restarts the server: the app's module and, when
    it belongs to a package, every Python file of that package.  Found
    without importing the app itself.
    """
    module_name = (app or "twistbridge.demo:bridge").partition(":")[0]
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        # Not importable yet: watch the file the name would be.
        return [os.path.abspath(module_name.replace(".", os.sep) + ".py")]
    top = module_name.split(".")[0]
    files = {os.path.abspath(spec.origin)}
    if "." in module_name or spec.submodule_search_locations:
        top_spec = importlib.util.find_spec(top)
        for folder in (top_spec.submodule_search_locations or []) if top_spec else []:
            for root, _, names in os.walk(folder):
                files.update(os.path.join(root, n) for n in names if n.endswith(".py"))
    return sorted(files)


def snapshot(paths: Iterable[str]) -> Dict[str, Optional[Tuple[int, int]]]:
    """Each path's (modification time, size), or L{None} when it is missing."""
    seen: Dict[str, Optional[Tuple[int, int]]] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            seen[path] = None
        else:
            seen[path] = (st.st_mtime_ns, st.st_size)
    return seen


def spawn_child(
    reactor: Any,
    process: Any,
    sockets: Dict[str, socket.socket],
    arguments: List[str],
    env: Dict[str, str],
    output: Any = None,
) -> Any:
    """
    Start C{twistd -n bridge} with C{arguments} in a child process that
    holds C{sockets} as systemd passes them (file descriptors 3 and up,
    named in C{LISTEN_FDNAMES}), with C{process} as its process protocol;
    C{output="r"} reads its stdout and stderr instead of sharing ours.
    """
    names = list(sockets)
    env["LISTEN_FDS"] = str(len(names))
    env["LISTEN_FDNAMES"] = ":".join(names)
    env.pop("LISTEN_PID", None)
    child_fds: Dict[int, Any] = {0: 0, 1: output or 1, 2: output or 2}
    for position, name in enumerate(names):
        child_fds[3 + position] = sockets[name].fileno()
    args = [
        sys.executable,
        "-m",
        "twistbridge._reloadchild",
        "-n",
        "--pidfile=",
        "bridge",
        *arguments,
    ]
    return reactor.spawnProcess(
        process, sys.executable, args, env=env, childFDs=child_fds
    )


class _Child(protocol.ProcessProtocol):
    """The running server; C{ended} fires with its exit status."""

    def __init__(self) -> None:
        self.ended: defer.Deferred = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        status = getattr(reason.value, "exitCode", None)
        if status is None:
            status = -(getattr(reason.value, "signal", None) or 0)
        self.ended.callback(status)


class ReloadService(Service):
    """
    The supervisor: owns the listening sockets, runs the server as a child
    process and restarts it when a watched file changes.

    @ivar sockets: listener name to its bound socket (every listener not
        switched off: the supervisor does not load the app, so it cannot know
        which ones the app leaves closed).
    @ivar files: the watched files.
    """

    interval = 0.5

    def __init__(
        self,
        settings: Any,
        app: Optional[str],
        argv: Sequence[str],
        explicit: Iterable[str] = (),
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self._explicit = set(explicit)
        self.sockets: Dict[str, socket.socket] = {}
        for name, option in LISTENERS:
            setting = "port" if name == "http" else f"{name}_port"
            address = parse_tcp(option, getattr(settings, setting), reactor)
            if address is None:
                continue
            try:
                self.sockets[name] = bind(option, *address)
            except ReloadError as e:
                if name == "http" or name in explicit:
                    raise
                # A default port the app may not even use: leave it closed.
                log.warn("reload: {name} listener left closed: {why}", name=name, why=e)
        self.files = watched_files(app)
        self._argv = list(argv)
        self._shutdown_timeout = float(settings.shutdown_timeout)
        self._seen = snapshot(self.files)
        self._child: Optional[_Child] = None
        self._transport: Any = None
        self._restart_pending = False
        self._stopping = False
        self._poll = LoopingCall(self._check)
        self._poll.clock = reactor

    def startService(self) -> None:
        """Start the server and the watch."""
        Service.startService(self)
        names = (
            ", ".join(self.files) if len(self.files) < 4 else f"{len(self.files)} files"
        )
        log.info("reload: watching {files}", files=names)
        self._spawn()
        self._poll.start(self.interval, now=False)

    def _spawn(self) -> None:
        domains = {
            name: "INET6" if sock.family == socket.AF_INET6 else "INET"
            for name, sock in self.sockets.items()
        }
        env = dict(os.environ)
        env[RELOAD_LISTENERS_ENV] = implicit_listeners(self._explicit, domains)
        env[RELOAD_CHILD_ENV] = "1"
        self._child = _Child()
        self._transport = spawn_child(
            self._reactor,
            self._child,
            self.sockets,
            child_arguments(self._argv, domains, self._explicit),
            env,
        )
        self._child.ended.addCallback(self._ended, self._child)

    def _ended(self, status: int, child: _Child) -> int:
        if child is not self._child:
            return status
        self._child = None
        self._transport = None
        if self._stopping:
            return status
        if self._restart_pending:
            self._restart_pending = False
            self._spawn()
            return status
        log.warn(
            "reload: the server exited with status {status}; waiting for a "
            "change to {what}",
            status=status,
            what="the app's files",
        )
        return status

    def _check(self) -> None:
        now = snapshot(self.files)
        changed = [p for p in self.files if now.get(p) != self._seen.get(p)]
        if not changed:
            return
        self._seen = now
        shown = os.path.relpath(changed[0])
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        log.info("reload: {file}{more} changed; restarting", file=shown, more=more)
        if self._child is None:
            self._spawn()
        else:
            self._restart_pending = True
            self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        try:
            self._transport.signalProcess(signum)
        except (error.ProcessExitedAlready, AttributeError, OSError):
            pass

    def stopService(self) -> Any:
        """Stop the watch, then the server (killed past the shutdown bound)."""
        Service.stopService(self)
        self._stopping = True
        if self._poll.running:
            self._poll.stop()
        child = self._child
        if child is None:
            self._close_sockets()
            return None
        self._signal(signal.SIGTERM)
        timer = self._reactor.callLater(
            self._shutdown_timeout + 5, self._signal, signal.SIGKILL
        )

        def ended(status: int) -> None:
            if timer.active():
                timer.cancel()
            self._close_sockets()

        return child.ended.addCallback(ended)

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():
            sock.close()
