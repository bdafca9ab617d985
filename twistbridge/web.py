"""
The HTTP side of a bridge: the root resource, C{GET /health} and the L{Site}.

    /         POST: izzati upload endpoint; GET: the browser playground
    /rpc      JSON-RPC 2.0 (and every other registered JSON-RPC path)
    /ws       Igor WebSocket streams
    /health   200 JSON once every service runs
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Site

if TYPE_CHECKING:
    from twistbridge.app import Bridge


def json_body(request: Any, code: int, body: Any) -> bytes:
    """Set C{code} and C{Content-Type: application/json}; return C{body} as JSON."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body).encode("utf-8")


class HealthResource(Resource):
    """C{GET /health}: listeners, whether each is up, and the pools."""

    isLeaf = True

    def __init__(self, bridge: Bridge) -> None:
        Resource.__init__(self)
        self._bridge = bridge

    def render_GET(self, request: Any) -> bytes:
        """200 C{{"status": "ok", ...}} once every service runs, else 503."""
        return json_body(request, *health(self._bridge))


def health(bridge: Bridge) -> tuple[int, Dict[str, Any]]:
    """The HTTP code and body of C{/health} for C{bridge}."""
    service = bridge._built.get("service")
    services: Dict[str, Any] = {}
    ok = True
    if service is not None:
        services = service.listener_status()
        ok = service.running and all(s["up"] for s in services.values())
    body = {
        "status": "ok" if ok else "starting",
        "services": services,
        "pools": bridge.offloader.stats(),
    }
    return (http.OK if ok else http.SERVICE_UNAVAILABLE), body


class IndexResource(Resource):
    """C{/}: C{POST} goes to the izzati endpoint, C{GET} shows the playground."""

    isLeaf = True

    def __init__(self, bridge: Bridge, izzati: Resource, page: Resource) -> None:
        Resource.__init__(self)
        self._izzati = izzati
        self._page = page

    def render(self, request: Any) -> Any:
        """Dispatch on the method."""
        if request.method == b"POST":
            return self._izzati.render(request)
        if request.method in (b"GET", b"HEAD"):
            return self._page.render(request)
        request.setResponseCode(http.NOT_ALLOWED)
        request.setHeader(b"Allow", b"GET, HEAD, POST")
        return b""


def build_root(bridge: Bridge) -> Resource:
    """Build the root resource of C{bridge}'s HTTP port."""
    from twistbridge.igor._protocol import build_resource as igor_resource
    from twistbridge.izzati._resource import build_resource as izzati_resource
    from twistbridge.jsonrpc._resource import mount as mount_rpc
    from twistbridge.playground import build_resource as playground
    from twistbridge.playground import mount as mount_playground

    root = Resource()
    root.putChild(b"", IndexResource(bridge, izzati_resource(bridge), playground(bridge)))
    root.putChild(b"health", HealthResource(bridge))
    root.putChild(b"ws", igor_resource(bridge))
    mount_rpc(root, bridge)
    mount_playground(root, bridge)
    return root


class BridgeSite(Site):
    """The L{Site} of the HTTP port (timeouts and limits from the settings)."""

    def __init__(self, bridge: Bridge) -> None:
        Site.__init__(self, bridge.resource())
        self.bridge = bridge
        self.timeOut = bridge.settings.idle_timeout
