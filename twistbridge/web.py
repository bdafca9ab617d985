"""
The HTTP side of a bridge: the root resource, C{GET /health} and the C{Site}::

    /         POST: izzati upload endpoint; GET: the browser playground
    /rpc      JSON-RPC 2.0 (and every other registered JSON-RPC path)
    /ws       Igor WebSocket streams
    /health   200 JSON once every service runs

Early body handling is L{twistbridge.request}'s: see there for the hooks
(C{check_request}, C{max_body_size}, C{body_consumer}) a resource may offer.
A resource may also offer C{lean_answer(request)}, for the plain requests
the channel answers without a twisted.web request (L{twistbridge._lean};
L{BridgeSite.lean_resource} finds it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Site

from twistbridge.channel import BridgeChannel
from twistbridge.config import Settings, worker_identity
from twistbridge.hosts import host_allowed
from twistbridge.request import BridgeRequest

if TYPE_CHECKING:
    from twistbridge.runtime import Runtime

log = Logger()

_CHILD_LOOKUP = Resource.getChildWithDefault


def json_body(request: Any, code: int, body: Any) -> bytes:
    """Set C{code} and C{Content-Type: application/json}; return C{body} as JSON."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body).encode("utf-8")


class HealthResource(Resource):
    """C{GET /health}: listeners, whether each is up, and the pools."""

    isLeaf = True

    def __init__(self, runtime: Runtime) -> None:
        Resource.__init__(self)
        self._runtime = runtime

    def render_GET(self, request: Any) -> bytes:
        """200 C{{"status": "ok", ...}} once every service runs, else 503."""
        return json_body(request, *health(self._runtime, request))


def health(runtime: Runtime, request: Any = None) -> tuple[int, Dict[str, Any]]:
    """
    The HTTP code and body of C{/health} for C{runtime}, asked by C{request}.

    The services are the bridge's listeners.  A bridge whose HTTP side is
    served by a site of the program's own (C{bridge.resource()} mounted
    there, with no HTTP listener of the bridge's) reports that site as
    C{"http"}: the address C{request} arrived on and where the bridge is
    C{"mounted"}.
    """
    service = runtime.built_service()
    services: Dict[str, Any] = {}
    ok: Union[bool, int] = True  # Service.running is an int
    if service is not None:
        services = service.listener_status()
        ok = service.running and all(s["up"] for s in services.values())
    if "http" not in services and request is not None:
        # request.prepath ends with b"health": what comes before is the mount.
        mounted = b"/".join([b"", *request.prepath[:-1], b""]).decode(
            "utf-8", "replace"
        )
        services = {
            "http": {
                "up": True,
                "address": _address_text(request.getHost()),
                "mounted": mounted,
            },
            **services,
        }
    body: Dict[str, Any] = {
        "status": "ok" if ok else "starting",
        "services": services,
        "pools": runtime.offloader.stats(),
    }
    worker = worker_identity()
    if worker is not None:
        body["worker"] = worker  # one of the processes of --workers
    # A shared broker out of reach: this instance still serves its own
    # clients (200), but says what it cannot do.
    hub = runtime.built("igor_hub")
    broker = hub.broker.status() if hub is not None else None
    if broker is not None:
        body["broker"] = broker
        if ok and not broker["up"]:
            body["status"] = "degraded"
            body["reason"] = broker["reason"]
    # With a broker, the bgpy lease (and its own connection to Redis).
    tasks = runtime.built("bgpy")
    cluster = getattr(tasks, "cluster", None)
    if cluster is not None:
        shared = cluster.status()
        body.setdefault("broker", {})["bgpy"] = shared
        if ok and not shared["up"] and body["status"] == "ok":
            body["status"] = "degraded"
            body["reason"] = shared["reason"]
    return (http.OK if ok else http.SERVICE_UNAVAILABLE), body


def _address_text(address: Any) -> str:
    """C{host:port} of an IP address, as the listeners report theirs; else its name."""
    # Not twistbridge.service.format_address: the service layer sits above this one.
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return str(name if name is not None else address)


class IndexResource(Resource):
    """C{/}: C{POST} goes to the izzati endpoint, C{GET} shows the playground."""

    isLeaf = True

    def __init__(self, izzati: Resource, page: Resource) -> None:
        Resource.__init__(self)
        self._izzati = izzati
        self._page = page

    def max_body_size(self, request: Any) -> Optional[int]:
        """The izzati resource's body limit for C{POST}; no body otherwise."""
        if request.method == b"POST":
            limit = getattr(self._izzati, "max_body_size", None)
            return None if limit is None else limit(request)
        return 0

    def body_consumer(self, request: Any) -> Any:
        """The izzati resource's body consumer for C{POST}."""
        if request.method == b"POST":
            consumer = getattr(self._izzati, "body_consumer", None)
            return None if consumer is None else consumer(request)
        return None

    def render(self, request: Any) -> Any:
        """Dispatch on the method."""
        if request.method == b"POST":
            return self._izzati.render(request)
        if request.method in (b"GET", b"HEAD"):
            return self._page.render(request)
        request.setResponseCode(http.NOT_ALLOWED)
        request.setHeader(b"Allow", b"GET, HEAD, POST")
        return b""


class BridgeRoot(Resource):
    """
    The bridge's root resource.  Mounted in another site under a name
    (C{/bridge/}), a request for the name itself without the slash is served
    as C{/bridge/} would be: C{POST /bridge} is an izzati upload, C{GET
    /bridge} redirects to C{/bridge/} (whose page loads its assets
    relative to that).
    """

    def __init__(self, index: IndexResource) -> None:
        Resource.__init__(self)
        self._index = index

    def max_body_size(self, request: Any) -> Optional[int]:
        """The index's body limit (an izzati upload's for C{POST})."""
        return self._index.max_body_size(request)

    def body_consumer(self, request: Any) -> Any:
        """The index's body consumer."""
        return self._index.body_consumer(request)

    def render(self, request: Any) -> Any:
        """C{GET}/C{HEAD}: redirect to the path with a slash; else the index."""
        if request.method in (b"GET", b"HEAD"):
            request.setResponseCode(http.MOVED_PERMANENTLY)
            request.setHeader(b"Location", request.path + b"/")
            return b""
        return self._index.render(request)


def build_root(runtime: Runtime) -> Resource:
    """Build the root resource of the HTTP port of C{runtime}."""
    from twistbridge.igor._protocol import build_resource as igor_resource
    from twistbridge.playground import build_page
    from twistbridge.playground import mount as mount_playground

    settings = runtime.settings
    index = IndexResource(runtime.izzati, build_page())
    root = BridgeRoot(index)
    root.putChild(b"", index)
    root.putChild(b"health", HealthResource(runtime))
    root.putChild(b"ws", igor_resource(runtime.igor_hub, settings, runtime.reactor))
    runtime.rpc.add_root(root)
    mount_playground(root, settings, lambda: runtime.bgpy)
    return root


class BridgeSite(Site):
    """
    The L{Site} of the HTTP port: L{BridgeChannel} connections (header and
    idle timeouts, minimum body rate from the settings) carrying
    L{BridgeRequest}s, answering only the allowed C{Host} names.

    @param reactor: the reactor of its connections' timeouts (L{None}: the
        global one), as C{Site}'s own C{reactor} argument.
    @ivar local_names: this machine's host names and addresses, always
        allowed as C{Host} (filled in from a thread when the site starts).
    """

    # Twisted types this as its HTTP/2-capable wrapper factory only.
    protocol = BridgeChannel  # type: ignore[assignment]
    requestFactory = BridgeRequest

    def acceptableProtocols(self) -> List[bytes]:
        """
        What a TLS listener offers over ALPN: HTTP/1.1 only, even where the
        C{h2} package is installed (Twisted's C{Site} then offers C{h2},
        which L{BridgeChannel} does not speak).
        """
        return [b"http/1.1"]

    def __init__(
        self, resource: Resource, settings: Settings, reactor: Any = None
    ) -> None:
        Site.__init__(self, resource, reactor=reactor)
        self.settings = settings
        self.timeOut = settings.idle_timeout
        import socket

        self.local_names: Tuple[str, ...] = (socket.gethostname().lower(),)
        self._asked_names = False
        kind = type(self)
        self._lean_plain = (
            kind.log is BridgeSite.log
            and kind.getResourceFor is BridgeSite.getResourceFor
        )

    def startFactory(self) -> None:
        """Ask the resolver, in a thread, for this machine's names and addresses."""
        Site.startFactory(self)
        if self._asked_names:
            return
        self._asked_names = True
        from twisted.internet.threads import deferToThreadPool

        from twistbridge.hosts import machine_names

        reactor: Any = self.reactor
        if not hasattr(reactor, "getThreadPool"):
            return  # a test reactor
        d = deferToThreadPool(reactor, reactor.getThreadPool(), machine_names)
        d.addCallback(self._got_names)
        d.addErrback(lambda f: log.failure("looking up this machine's names", f))

    def _got_names(self, names: Tuple[str, ...]) -> None:
        self.local_names = tuple(sorted(set(self.local_names) | set(names)))

    def host_allowed(self, host: str, channel: Any) -> bool:
        """
        Whether C{host} (a C{Host} header) is served: see
        L{twistbridge.hosts.host_allowed}; the address C{channel} arrived on
        counts as this machine's.
        """
        allowed = self.settings.allowed_host
        if host_allowed(host, allowed, self.local_names):
            return True
        local = getattr(channel.getHost(), "host", None)
        return local is not None and host_allowed(host, (), (str(local),))

    def getResourceFor(self, request: Any) -> Any:
        """
        The resource for C{request}: the one L{BridgeRequest} resolved when the
        headers came in, if it did, else a walk of the tree as usual.
        """
        early = getattr(request, "_early", None)
        if early is not None:
            request._early = None
            path, resource, prepath, postpath = early
            if path == request.path:
                request.site = self
                request.sitepath = []
                request.prepath, request.postpath = prepath, postpath
                return resource
        return Site.getResourceFor(self, request)

    def lean_resource(self, path: bytes) -> Any:
        """
        The resource that answers a plain C{POST} to C{path} on the
        channel's lean path (L{twistbridge._lean}): one offering
        C{lean_answer}, found through the C{children} of resources that
        look their children up there (twisted.web's own lookup, or one
        that says C{lean_lookup = True}); L{None} for any other path, and
        on a site whose requests, resources or log are not the bridge's own
        (another C{requestFactory}, or C{getResourceFor} or C{log}
        overridden).
        """
        if self.requestFactory is not BridgeRequest or not self._lean_plain:
            return None
        resource = self.resource
        for name in path[1:].split(b"/"):
            if resource.isLeaf or not (
                type(resource).getChildWithDefault is _CHILD_LOOKUP
                or getattr(resource, "lean_lookup", False)
            ):
                return None
            resource = resource.children.get(name)
            if resource is None:
                return None
        if getattr(resource, "lean_answer", None) is None:
            return None
        return resource

    def buildProtocol(self, addr: Any) -> Any:
        """A channel carrying the bridge's header timeout and body rate."""
        channel = Site.buildProtocol(self, addr)
        settings = self.settings
        channel.header_timeout = settings.header_timeout
        channel.min_body_rate = settings.min_body_rate
        channel.body_window = settings.idle_timeout or 60.0
        channel._clock = self.reactor
        return channel

    def log(self, request: Any) -> None:
        """One access-log event per answered request (L{twistbridge.logs})."""
        from twistbridge.logs import access_http

        access_http(request)
