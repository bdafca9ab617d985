"""
The HTTP side of a bridge: the root resource, C{GET /health} and the L{Site}.

    /         POST: izzati upload endpoint; GET: the browser playground
    /rpc      JSON-RPC 2.0 (and every other registered JSON-RPC path)
    /ws       Igor WebSocket streams
    /health   200 JSON once every service runs

Early body handling (L{BridgeRequest}, the request factory of L{BridgeSite}):
as soon as a request's headers are in, and before any of its body is read,
the target resource is resolved (C{Site.getResourceFor}, with C{method},
C{uri}, C{path} set from the request line) and two optional methods of that
resource are consulted:

    max_body_size(request) -> Optional[int]
        The largest body the resource accepts, in bytes (L{None}: no limit).
        A C{Content-Length} over it is answered C{413} with
        C{{"error": "..."}} at once, without reading the body and without
        the resource ever seeing the request; a chunked body that grows past
        it gets the same answer the moment it does.  The connection is then
        closed (after lingering a few seconds, discarding what the client
        still sends, so that it reads the 413 rather than a reset).

    body_consumer(request) -> Optional[consumer]
        An object that takes the body as it arrives instead of Twisted
        buffering it into C{request.content} (which then stays empty):
        C{consumer.write(data)} for every chunk, in order; and, only if the
        body never completes (the client went away, or the body went over
        C{max_body_size}), C{consumer.abort(reason)} once, so it can release
        what it holds.  The resource's C{render} runs once the body is
        complete, as usual, and finds the consumer as
        C{request.body_consumer}.

A resource that defines neither behaves exactly as under a plain L{Site};
if either method raises, the error is logged and the body is buffered as
usual.  A body going to a consumer that is chunked or over C{LARGE_BODY} is
read from the socket in pieces of up to C{LARGE_READ} bytes.
L{IndexResource} forwards both methods to the izzati resource for C{POST /}.
Where the request line is not available this early (HTTP/2), nothing is
resolved early: C{request.body_consumer} stays L{None} and resources fall
back to C{request.content}.
"""

from __future__ import annotations

import json
import re
from io import BytesIO
from typing import TYPE_CHECKING, Any, Dict, Optional
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from twistbridge.app import Bridge

log = Logger()

#: Seconds a refused request's connection stays half-open, discarding what
#: the client still sends, before it is closed.
REFUSAL_LINGER = 5.0
#: A body streamed to a consumer that is larger than this (or chunked) is
#: read from the socket in pieces of up to C{LARGE_READ} bytes instead of
#: Twisted's 64 KiB: fewer trips through the parser for big uploads.
LARGE_BODY = 1024 * 1024
LARGE_READ = 512 * 1024


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

    def max_body_size(self, request: Any) -> Optional[int]:
        """The izzati resource's body limit for C{POST}; none otherwise."""
        if request.method == b"POST":
            limit = getattr(self._izzati, "max_body_size", None)
            return None if limit is None else limit(request)
        return None

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


def _read_larger(transport: Any) -> None:
    """Read a large streamed body in pieces of L{LARGE_READ} bytes."""
    # Wrappers (connection limits, TLS) forward attribute reads to the
    # transport below them: set it on the object that reads the socket.
    while transport is not None:
        if isinstance(getattr(type(transport), "bufferSize", None), int):
            transport.bufferSize = max(transport.bufferSize, LARGE_READ)
            return
        transport = getattr(transport, "transport", None)


class BodyTooLarge(Exception):
    """A request body went over its resource's C{max_body_size}."""


def _discard(data: bytes) -> None:
    """Drop bytes a refused request's client still sends."""


_BODILESS = (b"GET", b"HEAD")

_MEDIA_TYPE = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+/[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def _not_a_form(content_type: bytes) -> bool:
    """
    Whether C{content_type} plainly names a media type other than the two
    that Twisted parses as forms.  Plainly: C{type/subtype} in RFC 9110
    token characters, before any C{;} parameters; anything else (comments,
    quotes, odd spacing) is left to Twisted's own parser, so forms are
    recognised exactly as under a plain L{Site}.
    """
    key = content_type.split(b";", 1)[0].strip(b" \t")
    return _MEDIA_TYPE.match(key) is not None and key.lower() not in _FORM_TYPES


class BridgeRequest(Request):
    """
    A L{Request} that lets its resource see the headers before the body
    (see the module docstring: C{max_body_size} and C{body_consumer}).

    @ivar body_consumer: the object the body went to, or L{None} when it was
        buffered into C{content} as usual.
    """

    body_consumer: Any = None
    _early: Any = None
    _body_limit: Optional[int] = None
    _body_received = 0
    _body_complete = False
    _refused = False
    _linger: Any = None

    def gotLength(self, length: Optional[int]) -> None:
        """The headers are in: resolve the resource and ask it about the body."""
        if length == 0 and getattr(self.channel, "_command", None) in _BODILESS:
            # A GET or HEAD without a body: nothing to limit or stream.
            Request.gotLength(self, length)
            return
        resource = self._resolve_early()
        if resource is not None:
            try:
                if self._ask(resource, length):
                    return
            except Exception:
                log.failure("{resource!r} failed before the body", resource=resource)
        Request.gotLength(self, length)

    def _ask(self, resource: Any, length: Optional[int]) -> bool:
        """
        Consult C{resource}'s C{max_body_size} and C{body_consumer}; L{True}
        when the body is taken care of (refused, or going to a consumer).
        """
        sizer = getattr(resource, "max_body_size", None)
        if sizer is not None:
            self._body_limit = sizer(self)
        if (
            self._body_limit is not None
            and length is not None
            and length > self._body_limit
        ):
            self.content = BytesIO()
            self._refuse(length)
            return True
        make = getattr(resource, "body_consumer", None)
        consumer = make(self) if make is not None else None
        if consumer is None:
            return False
        self.body_consumer = consumer
        self.content = BytesIO()
        if length is None or length > LARGE_BODY:
            _read_larger(self.channel.transport)
        return True

    def _resolve_early(self) -> Any:
        channel = self.channel
        command = getattr(channel, "_command", None)
        uri = getattr(channel, "_path", None)
        site = getattr(channel, "site", None)
        if command is None or uri is None or site is None:
            return None
        self.method, self.uri = command, uri
        self.path, _, query = uri.partition(b"?")
        self.args = http.parse_qs(query, 1) if query else {}
        if self.path == b"*":
            return None
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        try:
            resource = site.getResourceFor(self)
        except Exception:
            log.failure("resolving {uri!r} early failed", uri=uri)
            return None
        else:
            # Kept for BridgeSite.getResourceFor, which would walk the same
            # tree again once the body is in.
            self._early = (self.path, resource, self.prepath, self.postpath)
            return resource
        finally:
            self.prepath = []
            self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))

    def handleContentChunk(self, data: bytes) -> None:
        """A piece of the body: count it, then consume or buffer it."""
        if self._refused:
            return
        self._body_received += len(data)
        if self._body_limit is not None and self._body_received > self._body_limit:
            self._refuse(None)
            return
        if self.body_consumer is not None:
            self.body_consumer.write(data)
        else:
            self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The body is complete: process the request (unless it was refused)."""
        self._body_complete = True
        if self._refused:
            return
        ctype = self.requestHeaders.getRawHeaders(b"content-type")
        if ctype is not None and _not_a_form(ctype[0]):
            # Twisted would run the e-mail header parser on every POST's
            # Content-Type only to find out that it is not a form (about a
            # fifth of a JSON-RPC call's CPU): skip it when that is plain.
            self._parsePOSTFormSubmission = False
        Request.requestReceived(self, command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        """The connection went away: tell a consumer whose body never completed."""
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        if not self._body_complete:
            self._abort_consumer(reason)
        Request.connectionLost(self, reason)

    def _abort_consumer(self, reason: Failure) -> None:
        consumer, self.body_consumer = self.body_consumer, None
        if consumer is not None:
            abort = getattr(consumer, "abort", None)
            if abort is not None:
                try:
                    abort(reason)
                except Exception:
                    log.failure(
                        "body consumer {consumer!r} failed to abort", consumer=consumer
                    )

    def _refuse(self, length: Optional[int]) -> None:
        """Answer 413 now, stop reading the request, and close the connection."""
        self._refused = True
        limit = self._body_limit
        size = f"{length} bytes" if length is not None else "a chunked body"
        self._abort_consumer(Failure(BodyTooLarge(f"{size} over {limit} bytes")))
        channel = self.channel
        transport = channel.transport
        peer = getattr(transport.getPeer(), "host", "?")
        log.warn(
            "413 for {method} {uri} from {peer}: {size} over the limit of {limit} bytes",
            method=self.method.decode("ascii", "replace"),
            uri=self.uri.decode("ascii", "replace"),
            peer=peer,
            size=size,
            limit=limit,
        )
        # No "100 Continue" for this request: the channel sends it after gotLength.
        self.requestHeaders.removeHeader(b"Expect")
        body = json.dumps(
            {"error": f"request body too large: {size}, the limit is {limit} bytes"}
        ).encode("utf-8")
        transport.write(
            b"HTTP/1.1 413 Request Entity Too Large\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), body)
        )
        # Parse nothing more from this connection.
        channel.persistent = False
        channel.dataReceived = _discard
        channel.rawDataReceived = _discard
        # Close our side once the answer is out, but keep reading (and
        # dropping) for a while: closing with unread data would send the
        # client a reset that can destroy the 413 before it reads it.
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is not None:
            lose_write()
            self._linger = channel.callLater(REFUSAL_LINGER, transport.abortConnection)
        else:
            transport.loseConnection()


_TIMEOUT_BODY = b'{"error": "request headers took too long"}'
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class BridgeChannel(HTTPChannel):
    """
    An HTTP/1.1 channel with a header timeout on top of Twisted's idle one.

    Twisted's C{timeOut} is an idle timeout: every byte resets it, so a client
    that sends one header byte every few seconds (slowloris) would hold the
    connection for ever.  Here a request's headers must be complete within
    C{header_timeout} seconds of its first byte; otherwise the client gets
    C{408} and the connection is closed.

    One timer serves the whole connection: a request only notes the time of
    its first byte, and the timer, when it fires, either finds the headers
    of the request in hand overdue (408) or sets itself again for what is
    left of that request's time, or lapses if no request is waiting for its
    headers.  (Scheduling and cancelling a timer for every request would cost
    a keep-alive connection two reactor calls per request.)

    @ivar header_timeout: seconds, or L{None} for no header timeout.
    """

    header_timeout: Optional[float] = None
    #: what tells the time (the site's reactor; see L{BridgeSite.buildProtocol})
    _clock: Any = None
    _header_call: Any = None
    _header_since: Optional[float] = None
    _awaiting_headers = True

    def dataReceived(self, data: bytes) -> None:
        """Start the header clock at a request's first byte."""
        if self._awaiting_headers and self._header_since is None and self.header_timeout:
            self._header_since = self._now()
            if self._header_call is None:
                self._header_call = self.callLater(
                    self.header_timeout, self._check_headers
                )
        HTTPChannel.dataReceived(self, data)

    def allHeadersReceived(self) -> None:
        """The headers are complete in time: stop the clock."""
        self._awaiting_headers = False
        self._header_since = None
        HTTPChannel.allHeadersReceived(self)

    def requestDone(self, request: Any) -> None:
        """The next bytes belong to the next request's headers."""
        self._awaiting_headers = True
        HTTPChannel.requestDone(self, request)

    def connectionLost(self, reason: Failure) -> None:
        """Stop the clock."""
        self._header_since = None
        call, self._header_call = self._header_call, None
        if call is not None and call.active():
            call.cancel()
        HTTPChannel.connectionLost(self, reason)

    _host: Any = None

    def getHost(self) -> Any:
        """This end's address, asked of the socket once per connection
        (every request reads it)."""
        host = self._host
        if host is None:
            host = self._host = HTTPChannel.getHost(self)
        return host

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor as clock

            self._clock = clock
        return clock.seconds()

    def _check_headers(self) -> None:
        self._header_call = None
        since = self._header_since
        if since is None:
            return  # no request waiting for its headers: the next one re-arms
        left = since + self.header_timeout - self._now()
        if left > 0:
            self._header_call = self.callLater(left, self._check_headers)
            return
        self._headers_too_slow()

    def _headers_too_slow(self) -> None:
        self._header_since = None
        log.info(
            "408 for {peer}: request headers not complete within {timeout} s",
            peer=getattr(self.transport.getPeer(), "host", "?"),
            timeout=self.header_timeout,
        )
        self.transport.write(REQUEST_TIMEOUT)
        self.dataReceived = _discard  # type: ignore[method-assign]
        self.loseConnection()


class BridgeSite(Site):
    """
    The L{Site} of the HTTP port: L{BridgeChannel} connections (header and
    idle timeouts from the settings) carrying L{BridgeRequest}s.
    """

    protocol = BridgeChannel
    requestFactory = BridgeRequest

    def __init__(self, bridge: Bridge) -> None:
        Site.__init__(self, bridge.resource())
        self.bridge = bridge
        self.timeOut = bridge.settings.idle_timeout

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

    def buildProtocol(self, addr: Any) -> Any:
        """A channel carrying the bridge's header timeout."""
        channel = Site.buildProtocol(self, addr)
        channel.header_timeout = self.bridge.settings.header_timeout
        channel._clock = self.reactor
        return channel

    def log(self, request: Any) -> None:
        """One access-log event per answered request (L{twistbridge.logs})."""
        from twistbridge.logs import access_http

        access_http(request)
