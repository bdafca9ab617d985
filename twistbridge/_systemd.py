"""
systemd's service notification protocol (C{sd_notify}), spoken directly.

Under C{Type=notify} systemd names a Unix datagram socket in C{NOTIFY_SOCKET};
a service tells its state by sending one datagram of C{KEY=VALUE} lines to
it: C{READY=1} once it serves, C{STOPPING=1} when it begins to stop,
C{WATCHDOG=1} every so often when C{WATCHDOG_USEC} asks for it, C{STATUS=...}
for C{systemctl status}.  Outside systemd (no C{NOTIFY_SOCKET}) every call
here does nothing.

The protocol is one C{sendto()}; doing it here keeps twistbridge free of a
dependency (C{sdnotify} has had no release since 2017, C{systemd-python}
needs C{libsystemd} headers to build) and lets it handle the abstract-namespace
sockets (C{@name}) that systemd uses in containers.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping, Optional

from twisted.logger import Logger

log = Logger()


def notify_address(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """
    The socket address named by C{NOTIFY_SOCKET}, or L{None}.

    A leading C{@} names a socket in the abstract namespace (a NUL byte).
    """
    environ = os.environ if environ is None else environ
    address = environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return None
    if address[0] == "@":
        return "\0" + address[1:]
    return address


def notify(state: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """
    Send C{state} (e.g. C{"READY=1"}) to systemd.

    @return: whether a datagram was sent (C{False} outside systemd or when
        the socket cannot be reached; a failure is logged, never raised).
    """
    address = notify_address(environ)
    if address is None:
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
        sock.sendall(state.encode("utf-8"))
    except OSError as e:
        log.warn(
            "sd_notify {state!r} to {address!r} failed: {error}",
            state=state,
            address=address,
            error=e,
        )
        return False
    finally:
        sock.close()
    return True


def watchdog_interval(environ: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """
    Seconds between C{WATCHDOG=1} pings (half of C{WATCHDOG_USEC}, as
    C{sd_watchdog_enabled(3)} advises), or L{None} when no watchdog is set
    for this process (C{WATCHDOG_PID} naming another process counts as none).
    """
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2e6


class SystemdNotifier:
    """
    The notifications of one running bridge: C{READY=1} once every listener
    is bound, C{WATCHDOG=1} pings while it runs, C{STOPPING=1} at shutdown.

    @ivar environ: where C{NOTIFY_SOCKET} and C{WATCHDOG_USEC} are read.
    @ivar sent: every state sent, in order (for C{/health} and tests).
    """

    def __init__(
        self, reactor: Any = None, environ: Optional[Mapping[str, str]] = None
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.environ = os.environ if environ is None else environ
        self.sent: list = []
        self._watchdog: Any = None

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening (C{NOTIFY_SOCKET} is set)."""
        return notify_address(self.environ) is not None

    def _send(self, state: str) -> None:
        if notify(state, self.environ):
            self.sent.append(state)

    def ready(self, status: str = "") -> None:
        """Send C{READY=1} (with C{MAINPID}) and start the watchdog pings."""
        if not self.enabled:
            return
        lines = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            lines.append(f"STATUS={status}")
        self._send("\n".join(lines))
        interval = watchdog_interval(self.environ)
        if interval is not None and self._watchdog is None:
            from twisted.internet.task import LoopingCall

            self._watchdog = LoopingCall(self._send, "WATCHDOG=1")
            self._watchdog.clock = self._reactor
            self._watchdog.start(interval, now=True)

    def stopping(self, status: str = "") -> None:
        """Send C{STOPPING=1}; stop the watchdog pings."""
        self._stop_watchdog()
        if not self.enabled:
            return
        self._send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.running:
            watchdog.stop()
