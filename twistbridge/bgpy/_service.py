"""
bgpy's service assembly: the factory of C{--bgpy-port} and the service
that runs C{init_task} at start and C{exit_task} at stop, over the task
runtime (L{twistbridge.bgpy._runtime}) that runs the tasks one at a time.
Each connection is a L{twistbridge.bgpy._connection.BgpyProtocol}; its
frames are paced by L{twistbridge.bgpy._pacing}.

    build_factory(rt)        the L{BgpyFactory} of the bgpy listener
    build_services(rt)       [L{BgpyTaskService}] when tasks are configured

where C{rt} is the bridge's L{TaskRuntime} (C{bridge.runtime().bgpy}), which
is also the way for other parts of a program (such as the browser
playground) to reach the tasks without a socket::

    rt = bridge.runtime().bgpy
    rt.state()                  # a copy of the current state, or None
    d = rt.execute({"command": "increase", "value_change": 10})
    d.addCallback(print)        # the new state (a copy), after exec_task ran

C{execute} goes through the same one-at-a-time queue as the clients' EXEC
messages; it fails with L{TaskError} when the tasks are not initialized or
C{exec_task} raised.
"""

from __future__ import annotations

from typing import Any, List

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory

from twistbridge.bgpy._connection import BgpyProtocol
from twistbridge.bgpy._runtime import TaskRuntime

__all__ = [
    "BgpyClusterService",
    "BgpyFactory",
    "BgpyTaskService",
    "build_factory",
    "build_services",
]


class BgpyFactory(Factory):
    """
    The factory of the bgpy listener.

    @ivar runtime: the bridge's L{TaskRuntime}, shared by every connection.
    @ivar settings: the bridge's settings.
    @ivar reactor: the reactor (for timers).
    """

    noisy = False

    def __init__(self, runtime: TaskRuntime, reactor: Any = None) -> None:
        self.runtime = runtime
        self.settings = runtime.registry.settings
        self.reactor = reactor or runtime.reactor

    def buildProtocol(self, addr: Any) -> BgpyProtocol:
        """A L{BgpyProtocol} for one connection."""
        return BgpyProtocol(self)


class BgpyTaskService(Service):
    """
    Runs C{init_task} when it starts (as bgpy's C{--init-file} does) and
    C{exit_task} when it stops, if initialized (graceful shutdown).

    @ivar runtime: the L{TaskRuntime}.
    """

    name = "bgpy-tasks"  # type: ignore[assignment]  # Twisted types it as None

    def __init__(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime

    def startService(self) -> None:
        """Run C{init_task}."""
        Service.startService(self)
        self.runtime.start()

    def stopService(self) -> Deferred:
        """Run C{exit_task} if initialized; fires once it ran."""
        Service.stopService(self)
        return self.runtime.stop()


def build_factory(runtime: TaskRuntime) -> Factory:
    """The factory of the bgpy port."""
    return BgpyFactory(runtime)


class BgpyClusterService(Service):
    """
    With a broker: connects to Redis and runs the tasks while this instance
    holds the bgpy lease (L{twistbridge.bgpy._cluster.BgpyCluster}).  Its
    stop gives the lease up; the state stays in Redis (no C{exit_task}).

    @ivar cluster: the C{BgpyCluster}.
    """

    name = "bgpy-broker"  # type: ignore[assignment]  # Twisted types it as None

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def startService(self) -> None:
        """Connect to Redis."""
        Service.startService(self)
        self.cluster.start()

    def stopService(self) -> Deferred:
        """Give up the lease, disconnect."""
        Service.stopService(self)
        d: Deferred = self.cluster.stop()
        return d


def build_services(runtime: TaskRuntime) -> List[Any]:
    """
    Services for bgpy: init_task at start, exit_task at stop; with a
    broker, the L{BgpyClusterService} instead.
    """
    if runtime.cluster is not None:
        return [BgpyClusterService(runtime.cluster)]
    if runtime.machine.configured is None:
        return []
    return [BgpyTaskService(runtime)]
