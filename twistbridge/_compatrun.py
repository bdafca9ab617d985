"""
How the compatibility servers (C{IgorServer}, C{JSONRPCServer}, izzati's
C{Backend}, bgpy's C{Server}) run standalone: L{run_standalone} binds every
listener before the reactor runs -- on failure one line naming the program,
the address and the reason, then exit status 1, as the original programs'
users expect from a server that cannot start -- then begins logging, starts
serving, stops gracefully before the reactor shuts down, and runs the
reactor until then.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, NoReturn, Optional, Sequence

from twistbridge.listeners import ListenError

__all__ = ["bind_or_exit", "cannot_listen", "run_standalone"]

_logging_begun = False


def cannot_listen(program: str, address: str, reason: str) -> NoReturn:
    """Print C{<program>: cannot listen on <address>: <reason>}; exit 1."""
    print(f"{program}: cannot listen on {address}: {reason}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(1)


def bind_or_exit(
    bind: Any,
    program: str,
    address_of: Callable[[str], str],
    reason_of: Optional[Callable[[ListenError], str]] = None,
) -> Any:
    """
    Bind now: C{bind} is a service (its C{privilegedStartService} binds
    every listener) or a callable that binds (it may raise L{ListenError}
    or return a C{Deferred} that failed with one).

    @param address_of: maps a listener's name to the address its user
        configured (C{"localhost:5678"}).
    @param reason_of: the reason to print for a L{ListenError} (default:
        its own C{reason}).
    @return: what C{bind} returned.
    @raise SystemExit: status 1, after the one-line message, when a
        listener cannot bind.
    """
    from twisted.internet.defer import Deferred

    call = getattr(bind, "privilegedStartService", bind)
    failures: list = []
    result = None
    try:
        result = call()
        if isinstance(result, Deferred):
            result.addErrback(failures.append)
    except ListenError as error:
        failures.append(error)
    if failures:
        first = getattr(failures[0], "value", failures[0])
        if not isinstance(first, ListenError):
            raise first
        reason = reason_of(first) if reason_of else (first.reason or str(first))
        cannot_listen(program, address_of(first.listener), reason)
    return result


def begin_logging(observers: Sequence[Any]) -> None:
    """Log to C{observers} from now on (once per process: later calls do nothing)."""
    global _logging_begun
    if _logging_begun:
        return
    _logging_begun = True
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo(list(observers), redirectStandardIO=False)


def run_standalone(
    program: str,
    address_of: Callable[[str], str],
    service: Any = None,
    *,
    start: Optional[Callable[[], Any]] = None,
    stop: Optional[Callable[[], Any]] = None,
    observers: Optional[Sequence[Any]] = None,
    reason_of: Optional[Callable[[ListenError], str]] = None,
    reactor: Any = None,
) -> None:
    """
    Serve as the process until the reactor stops (SIGINT, SIGTERM, or a
    handler's request to stop), then return after the graceful stop.

      1. Bind (L{bind_or_exit}): the one-line message and exit status 1
         when a listener cannot bind.
      2. Begin logging to C{observers} (L{None}: leave logging as it is).
      3. Start serving once the reactor runs; stop before it shuts down.
      4. Run the reactor.

    @param service: the L{twistbridge.service.BridgeService} to run: bound
        with C{privilegedStartService}, started with C{startService},
        stopped with C{stopService}; it owns the reactor (a handler's
        C{SystemExit} stops the reactor, see
        L{BridgeService.request_stop<twistbridge.service.BridgeService.request_stop>}).
    @param start: instead of C{service}, what binds and starts serving (it
        may raise L{ListenError} or return a C{Deferred}).
    @param stop: with C{start}, what stops serving (may return a
        C{Deferred}).
    """
    if reactor is None:
        from twisted.internet import reactor
    if service is not None:
        service.owns_reactor = True
        bind_or_exit(service, program, address_of, reason_of)
        start_serving: Optional[Callable[[], Any]] = service.startService
        stop = service.stopService
    else:
        assert start is not None and stop is not None
        bind_or_exit(start, program, address_of, reason_of)
        start_serving = None
    if observers is not None:
        begin_logging(observers)
    if start_serving is not None:
        reactor.callWhenRunning(start_serving)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
