"""bgpy's Twisted adapter: the protocol on C{--bgpy-port}."""

from __future__ import annotations

from typing import Any, List

from twisted.internet.protocol import Factory


def build_factory(bridge: Any) -> Factory:
    """The factory of the bgpy port."""
    return Factory()


def build_services(bridge: Any) -> List[Any]:
    """Services for bgpy (init_task at start, exit_task at stop)."""
    return []
