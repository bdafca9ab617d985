"""C{GET /}: the browser playground page (static files shipped in the package)."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.static import Data


def build_resource(bridge: Any) -> Resource:
    """The page served at C{GET /}."""
    page = (
        b"<!doctype html><meta charset=utf-8><title>twistbridge</title>"
        b"<h1>twistbridge</h1><p>See <a href=/health>/health</a>.</p>"
    )
    return Data(page, "text/html; charset=utf-8")
