"""
The runtime: everything built to serve one registry::

    runtime = Runtime(bridge)
    runtime.service      # the MultiService twistd runs
    runtime.root         # the HTTP root resource

A L{twistbridge.registry.Registry} is data only.  Serving it creates one
L{Runtime}, which owns what is built from it (the offloader, the Igor hub,
the JSON-RPC controller, the bgpy task runtime, the root resource and the
service) and hands each protocol adapter the parts it needs, explicitly:
adapters never import the application module.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Optional

from twisted.logger import Logger
from twisted.web.resource import Resource

from twistbridge.bgpy._runtime import TaskRuntime
from twistbridge.config import Settings
from twistbridge.igor._hub import Hub
from twistbridge.izzati._resource import IzzatiResource
from twistbridge.jsonrpc._controller import RpcController
from twistbridge.offload import Offloader
from twistbridge.registry import Registry
from twistbridge.service import BridgeService
from twistbridge.web import build_root

if TYPE_CHECKING:
    from twistbridge.metrics import BridgeMetrics

__all__ = ["Runtime"]

log = Logger()


class Runtime:
    """
    What serves one L{Registry}: each part is built on first use, once.

    @ivar registry: the registrations and settings served.
    @ivar reactor: the reactor the parts use (L{None}: the global one).
    @ivar offloader: the thread and process pools every handler goes through
        (given, or built from the settings).
    """

    def __init__(
        self,
        registry: Registry,
        reactor: Any = None,
        offloader: Optional[Offloader] = None,
    ) -> None:
        self.registry = registry
        self.reactor = reactor
        s = registry.settings
        if offloader is None:
            offloader = Offloader(
                threads=s.threads,
                processes=s.processes,
                call_timeout=s.call_timeout,
                shutdown_timeout=s.shutdown_timeout,
                max_queued=s.max_queued,
                reactor=reactor,
            )
        self.offloader = offloader
        self._checked = False

    @property
    def settings(self) -> Settings:
        """The registry's settings (read when each part is built)."""
        return self.registry.settings

    def check(self) -> None:
        """Check the registry (L{Registry.check}) the first time only."""
        if not self._checked:
            self.registry.check()
            self._checked = True

    @cached_property
    def igor_hub(self) -> Hub:
        """The Igor hub: clients, sessions, streams and processes."""
        s = self.settings
        return Hub(
            self.registry.igor_handlers,
            self.offloader,
            reactor=self.reactor,
            shutdown_timeout=s.shutdown_timeout,
            takeover=s.igor_takeover,
            on_exit=self.handler_exit,
            broker=self.broker,
        )

    @cached_property
    def broker(self) -> Any:
        """
        What the Igor hub shares with other instances (the C{broker}
        setting): L{twistbridge.igor._broker.LocalBroker} (none given: this
        process alone), or a L{twistbridge.igor._redis.RedisBroker}.
        """
        s = self.settings
        if s.broker is None:
            from twistbridge.igor._broker import LocalBroker

            return LocalBroker()
        from twistbridge._redisconn import redis_client_available
        from twistbridge.config import parse_broker
        from twistbridge.igor._redis import RedisBroker

        if not redis_client_available():
            raise RuntimeError(
                "--broker needs the Redis client txredisapi: "
                "pip install 'twistbridge[redis]'"
            )
        return RedisBroker(parse_broker(s.broker), reactor=self.reactor)

    def handler_exit(self, why: str) -> None:
        """
        A handler asked to stop the bridge (C{why} says which): its service
        stops (L{BridgeService.request_stop}: the reactor too only when the
        bridge is the process).  A bridge whose service was never built (its
        resource mounted in another site) has nothing of its own to stop.
        """
        service = self.built_service()
        if service is None:
            log.warn(
                "{why}: nothing stopped (the bridge runs no service of its own)",
                why=why,
            )
            return
        service.request_stop(why)

    @cached_property
    def rpc(self) -> RpcController:
        """The JSON-RPC controller shared by every JSON-RPC path."""
        return RpcController(self.registry, self.offloader, self.reactor)

    @cached_property
    def bgpy(self) -> TaskRuntime:
        """
        The bgpy tasks and their state; with a C{broker}, its C{cluster}
        (L{twistbridge.bgpy._cluster.BgpyCluster}) runs them on the instance
        holding the bgpy lease.
        """
        rt = TaskRuntime(self.registry, self.offloader, self.reactor)
        s = self.settings
        if s.broker is not None:
            from twistbridge._redisconn import redis_client_available
            from twistbridge.bgpy._cluster import BgpyCluster
            from twistbridge.config import parse_broker

            if not redis_client_available():
                raise RuntimeError(
                    "--broker needs the Redis client txredisapi: "
                    "pip install 'twistbridge[redis]'"
                )
            rt.cluster = BgpyCluster(
                parse_broker(s.broker),
                self.offloader,
                rt.machine.configured,
                reactor=self.reactor,
                policy=rt.allow_modules,
                max_wait=s.call_timeout,
            )
        return rt

    @cached_property
    def izzati(self) -> IzzatiResource:
        """The izzati upload endpoint (C{POST /} of the root)."""
        return IzzatiResource(self.registry, self.offloader)

    @cached_property
    def metrics(self) -> BridgeMetrics:
        """The Prometheus metrics (served when C{metrics_port} is set)."""
        # Imported when asked for: prometheus_client is a tenth of a bridge's
        # start-up, and only a bridge with a metrics port uses it.
        from twistbridge.metrics import BridgeMetrics

        return BridgeMetrics(self)

    @cached_property
    def root(self) -> Resource:
        """The HTTP root resource (checks the registry first)."""
        self.check()
        return build_root(self)

    @cached_property
    def service(self) -> BridgeService:
        """The service serving everything (checks the registry first)."""
        self.check()
        return BridgeService(self, self.reactor)

    def built(self, part: str) -> Any:
        """The part named C{part} (C{"igor_hub"}, C{"bgpy"}, ...) if it was
        built, else L{None}: for what reports on the parts without building
        them (C{/health}, the metrics)."""
        return self.__dict__.get(part)

    def built_service(self) -> Optional[BridgeService]:
        """L{service} if it was built (the bridge runs as a service), else L{None}."""
        service: Optional[BridgeService] = self.__dict__.get("service")
        return service
