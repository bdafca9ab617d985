"""The izzati endpoint's Twisted adapter (C{POST /})."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import ErrorPage, Resource


def build_resource(bridge: Any) -> Resource:
    """The resource answering izzati's C{POST /}."""
    return ErrorPage(501, "Not Implemented", "izzati endpoint not built yet")
