"""Igor's autobahn adapter: the WebSocket protocol, factory and resource."""

from __future__ import annotations

from typing import Any, List

from twisted.internet.protocol import Factory
from twisted.web.resource import ErrorPage, Resource


def build_resource(bridge: Any) -> Resource:
    """The C{/ws} resource of the HTTP port."""
    return ErrorPage(501, "Not Implemented", "Igor not built yet")


def build_factory(bridge: Any) -> Factory:
    """The factory of the standalone Igor port."""
    return Factory()


def build_services(bridge: Any) -> List[Any]:
    """Services that run Igor processes."""
    return []
