"""JSON-RPC's twisted.web adapter: one resource per registered path."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource


def mount(root: Resource, bridge: Any) -> None:
    """Put a JSON-RPC resource on C{root} at every path the app registered."""
