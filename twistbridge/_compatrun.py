"""
How the compatibility servers (C{IgorServer}, C{JSONRPCServer}, izzati's
C{Backend}) bind: every listener before the reactor runs, and on failure one
line naming the program, the address and the reason, then exit status 1 --
as the original programs' users expect from a server that cannot start.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, NoReturn

from twistbridge.service import ListenError

__all__ = ["bind_or_exit", "cannot_listen"]


def cannot_listen(program: str, address: str, reason: str) -> NoReturn:
    """Print C{<program>: cannot listen on <address>: <reason>}; exit 1."""
    print(f"{program}: cannot listen on {address}: {reason}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(1)


def bind_or_exit(service: Any, program: str, address_of: Callable[[str], str]) -> None:
    """
    Bind every listener of C{service} now (its C{privilegedStartService}).

    @param address_of: maps a listener's name to the address its user
        configured (C{"localhost:5678"}).
    @raise SystemExit: status 1, after the one-line message, when a
        listener cannot bind.
    """
    try:
        service.privilegedStartService()
    except ListenError as error:
        reason = error.reason or str(error)
        cannot_listen(program, address_of(error.listener), reason)
