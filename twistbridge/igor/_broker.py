"""
The seam between the Igor hub and the other bridge instances it shares its
clients with: a broker.

The hub asks its broker for what may span instances -- broadcasts, sends to
a client connected elsewhere, automatic client ids, and which instance runs
each Igor process -- and tells it which clients connect, rename themselves
and leave.  L{LocalBroker}, the default, is this process alone (the bridge
as it always was); L{twistbridge.igor._redis.RedisBroker} shares them
through Redis (the C{broker} setting).

Every method is called in the reactor thread, except L{LocalBroker.send}
and L{LocalBroker.holds}, which any thread may call.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred

from twistbridge.igor._core import UnknownClientError

__all__ = ["LocalBroker"]


class LocalBroker:
    """
    This process only: broadcasts reach the local clients, a send to a
    client id not connected here raises L{UnknownClientError}, ids are the
    hub's own, and every process runs here.
    """

    #: L{True} for a broker shared by several instances.
    shared = False

    def start(self, deliver_all: Callable[[bytes], None], deliver: Any) -> None:
        """
        Start serving a hub: C{deliver_all(payload)} writes to every local
        client, C{deliver(client_id, payload)} to one local client (both in
        the reactor thread), for what other instances send.
        """

    def stop(self) -> Deferred:
        """Stop: release what is held elsewhere (nothing here)."""
        return defer.succeed(None)

    def status(self) -> Optional[Dict[str, Any]]:
        """What C{/health} reports of the broker: L{None}, nothing to report."""
        return None

    def next_id(self) -> Optional[int]:
        """An automatic client id; L{None}: the hub picks its own."""
        return None

    def joined(self, client_id: Any) -> None:
        """A client of this instance connected, or took C{client_id} as its name."""

    def left(self, client_id: Any) -> None:
        """A client of this instance left, or gave up C{client_id} for another."""

    def publish(self, payload: bytes) -> None:
        """
        A process message to every client of the other instances (reactor
        thread; the hub writes to its own clients itself).
        """

    def send(self, client_id: Any, payload: bytes) -> None:
        """
        A process message to a client that is not connected here (any thread).

        @raise UnknownClientError: no instance has it.
        """
        raise UnknownClientError(client_id)

    def run_processes(
        self,
        process_ids: Iterable[Any],
        start: Callable[[Any], None],
        stop: Callable[[Any], None],
    ) -> None:
        """
        Run each process where the broker says: C{start(process_id)} when
        this instance should run it, C{stop(process_id)} when it must stop.
        Here every process starts at once.
        """
        for process_id in process_ids:
            start(process_id)

    def holds(self, process_id: Any) -> bool:
        """Whether this instance runs C{process_id} now (any thread)."""
        return True
