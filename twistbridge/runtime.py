"""
The runtime: everything built to serve one registry.

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
from typing import Any, Optional

from twisted.logger import Logger
from twisted.web.resource import Resource

from twistbridge.bgpy._runtime import TaskRuntime
from twistbridge.config import Settings
from twistbridge.igor._hub import Hub
from twistbridge.jsonrpc._resource import RpcController
from twistbridge.offload import Offloader
from twistbridge.registry import Registry
from twistbridge.service import BridgeService
from twistbridge.web import build_root

__all__ = ["Runtime"]

log = Logger()


class Runtime:
    """
    What serves one L{Registry}: each part is built on first use, once.

    @ivar registry: the registrations and settings served.
    @ivar reactor: the reactor the parts use (L{None}: the global one).
    @ivar offloader: the thread and process pools every handler goes through.
    """

    def __init__(self, registry: Registry, reactor: Any = None) -> None:
        self.registry = registry
        self.reactor = reactor
        s = registry.settings
        self.offloader = Offloader(
            threads=s.threads,
            processes=s.processes,
            call_timeout=s.call_timeout,
            shutdown_timeout=s.shutdown_timeout,
            max_queued=s.max_queued,
        )

    @property
    def settings(self) -> Settings:
        """The registry's settings (read when each part is built)."""
        return self.registry.settings

    @cached_property
    def igor_hub(self) -> Hub:
        """The Igor hub: clients, sessions, streams and processes."""
        s = self.settings
        return Hub(
            self.registry.igor_handlers,
            self.offloader,
            shutdown_timeout=s.shutdown_timeout,
            takeover=s.igor_takeover,
            on_exit=self.handler_exit,
        )

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
        """The bgpy tasks and their state."""
        return TaskRuntime(self.registry, self.offloader, self.reactor)

    @cached_property
    def root(self) -> Resource:
        """The HTTP root resource (checks the registry first)."""
        self.registry.check()
        return build_root(self)

    @cached_property
    def service(self) -> BridgeService:
        """The service serving everything (checks the registry first)."""
        self.registry.check()
        return BridgeService(self, self.reactor)

    def built_service(self) -> Optional[BridgeService]:
        """L{service} if it was built (the bridge runs as a service), else L{None}."""
        service: Optional[BridgeService] = self.__dict__.get("service")
        return service
