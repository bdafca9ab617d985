"""
The early-body request of the bridge's sites.

Early body handling (L{BridgeRequest}, the request factory of
L{twistbridge.web.BridgeSite}):
as soon as a request's headers are in, and before any of its body is read,
the target resource is resolved (C{Site.getResourceFor}, with C{method},
C{uri}, C{path} set from the request line) and two optional methods of that
resource are consulted::

    check_request(request) -> None
        Consulted first, when the request has a body (or a chunked one):
        raises Refusal to answer at once from the headers alone (a
        missing token, say), before a byte of the body is read.

    max_body_size(request) -> Optional[int]
        The largest body the resource accepts, in bytes (None: no limit).
        A resource without this method takes no body: its limit is 0, and a
        body on it is refused (404 where the path names nothing or the
        resource has body_refusal_code = 404, else
        400 on a GET, HEAD, DELETE, OPTIONS or TRACE, else
        413).
        A Content-Length over it is answered 413 with
        {"error": "..."} at once, without reading the body and without
        the resource ever seeing the request; a chunked body that grows past
        it gets the same answer the moment it does.  The connection is then
        closed (after lingering a few seconds, discarding what the client
        still sends, so that it reads the 413 rather than a reset).

    body_consumer(request) -> Optional[consumer]
        An object that takes the body as it arrives instead of Twisted
        buffering it into request.content (which then stays empty):
        consumer.write(data) for every chunk, in order; and, only if the
        body never completes (the client went away, or the body went over
        max_body_size), consumer.abort(reason) once, so it can release
        what it holds.  The resource's render runs once the body is
        complete, as usual, and finds the consumer as
        request.body_consumer.  Making it, or its write, may raise
        Refusal: the request is answered with it and the consumer
        aborted (a full upload disk, say).

Before any of this, the C{Host} header is checked (L{twistbridge.hosts}):
a name the server does not serve is answered C{421} before the resource
is even resolved.  If a hook raises anything but L{Refusal}, the error is
logged and the body is buffered as usual.  A body going to a consumer that is chunked or over C{LARGE_BODY} is
read from the socket in pieces of up to C{LARGE_READ} bytes.
L{IndexResource} forwards both methods to the izzati resource for C{POST /}.
Where the request line is not available this early (HTTP/2), nothing is
resolved early: C{request.body_consumer} stays L{None} and resources fall
back to C{request.content}.

A consumer that reads part of the body from the socket itself (the izzati
endpoint's splicing) says so with L{BridgeRequest.body_read_past}, and may
refuse the request with L{BridgeRequest.refuse_body}.

The module is long because the early-body protocol (the host check, the
three hooks, the body's limits, refusals and lingering) is one piece.
"""

from __future__ import annotations

import json
import re
from io import BytesIO
from time import monotonic as _monotonic
from typing import IO, TYPE_CHECKING, Any, Iterable, Optional, Tuple
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import Request

from twistbridge._internals import (
    body_read_past,
    error_page_code,
    request_line,
    skip_form_parsing,
)
from twistbridge.channel import BridgeChannel, answer_and_close
from twistbridge.hosts import refusal_message
from twistbridge.logs import access_refused

if TYPE_CHECKING:
    pass

log = Logger()

#: A body streamed to a consumer that is larger than this (or chunked) is
#: read from the socket in pieces of up to C{LARGE_READ} bytes instead of
#: Twisted's 64 KiB: fewer trips through the parser for big uploads.
LARGE_BODY = 1024 * 1024
LARGE_READ = 512 * 1024


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


class Refusal(Exception):
    """
    Raised by a resource's early hooks (see the module docstring): answer
    the request with C{code} and C{{"error": message}} now, and close.

    @ivar code: the HTTP status code.
    @ivar message: one line saying what was wrong and what to do.
    @ivar headers: extra response headers, C{(name, value)} byte pairs.
    """

    def __init__(
        self, code: int, message: str, headers: Iterable[Tuple[bytes, bytes]] = ()
    ) -> None:
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.headers = tuple(headers)


_BODILESS = (b"GET", b"HEAD")
#: Methods whose requests carry no body: one that does is a bad request.
_NO_BODY_METHODS = (b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE")

_MEDIA_TYPE = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+/[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


#: Bytes Python's e-mail header parser takes for line ends (C{str.splitlines}
#: does), on which Twisted's form detection raises out of the connection.
_LINE_ENDS = re.compile(rb"[\x0b\x0c\x1c\x1d\x1e\x85]")


def _not_a_form(content_type: bytes) -> bool:
    """
    Whether C{content_type} plainly names a media type other than the two
    that Twisted parses as forms.  Plainly: C{type/subtype} in RFC 9110
    token characters, before any C{;} parameters; anything else (comments,
    quotes, odd spacing) is left to Twisted's own parser, so forms are
    recognised exactly as under a plain L{twisted.web.server.Site}.
    """
    key = content_type.split(b";", 1)[0].strip(b" \t")
    return _MEDIA_TYPE.match(key) is not None and key.lower() not in _FORM_TYPES


def _error_code(resource: Any) -> Optional[int]:
    """
    The status a body sent to C{resource} (which takes none) is answered
    with when not 400/413: its C{body_refusal_code}, or the status of
    Twisted's error pages (C{pages.notFound()}, C{NoResource}); L{None} for
    other resources.
    """
    code = getattr(resource, "body_refusal_code", None)
    if code is None:
        return error_page_code(resource)
    return code if isinstance(code, int) else None


class BridgeRequest(Request):
    """
    A L{Request} that checks its C{Host} and lets its resource see the
    headers before the body (see the module docstring: C{check_request},
    C{max_body_size} and C{body_consumer}).

    @ivar body_consumer: the object the body went to, or L{None} when it was
        buffered into C{content} as usual.
    @ivar started: C{time.monotonic()} when the headers were in (the
        metrics' request latency starts there).
    """

    # Twisted documents it as a BinaryIO but types it as None.
    content: IO[bytes]  # type: ignore[assignment]
    body_consumer: Any = None
    started: Optional[float] = None
    #: The body limit of a resource that names none (0: it takes no body).
    #: A request class whose answers must all go through the resource
    #: (flaskJSONRPCServer's postprocessers see even a 404) sets a bound.
    default_body_limit = 0
    _early: Any = None
    _body_limit: Optional[int] = None
    _body_received = 0
    _body_complete = False
    _refused = False
    _host_checked = False
    _error_page: Optional[int] = None
    _linger: Any = None

    def gotLength(self, length: Optional[int]) -> None:
        """The headers are in: check the host, resolve the resource and ask
        it about the body."""
        self.started = _monotonic()
        self._host_checked = True
        refused = self._host_refusal()
        if refused is not None:
            self.content = BytesIO()
            self._refuse_with(refused)
            return
        if length == 0 and request_line(self.channel)[0] in _BODILESS:
            # A GET or HEAD without a body: nothing to limit or stream.
            Request.gotLength(self, length)
            return
        resource = self._resolve_early()
        if resource is not None:
            try:
                if self._ask(resource, length):
                    return
            except Refusal as refusal:
                self.content = BytesIO()
                self._refuse_with(refusal)
                return
            except Exception:
                log.failure("{resource!r} failed before the body", resource=resource)
        Request.gotLength(self, length)

    def _host_refusal(self) -> Optional[Refusal]:
        """A 421 when the C{Host} header names a host this server does not serve."""
        site = getattr(self.channel, "site", None)
        allowed = getattr(site, "host_allowed", None)
        if allowed is None:
            return None
        hosts = self.requestHeaders.getRawHeaders(b"host")
        if hosts is None:
            return None
        if len(hosts) > 1:
            return Refusal(http.BAD_REQUEST, "more than one Host header")
        host = hosts[0].decode("latin-1")
        if allowed(host, self.channel):
            return None
        return Refusal(421, refusal_message(host))

    def _ask(self, resource: Any, length: Optional[int]) -> bool:
        """
        Consult C{resource}'s C{check_request}, C{max_body_size} and
        C{body_consumer}; L{True} when the body is taken care of (refused,
        or going to a consumer).

        @raise Refusal: when a hook refuses the request.
        """
        check = getattr(resource, "check_request", None)
        if check is not None and length != 0:
            check(self)
        sizer = getattr(resource, "max_body_size", None)
        self._body_limit = sizer(self) if sizer is not None else self.default_body_limit
        if sizer is None and not self._body_limit:
            self._error_page = _error_code(resource)
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
        command, uri = request_line(channel)
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
            try:
                self.body_consumer.write(data)
            except Refusal as refusal:
                self._refuse_with(refusal)
        else:
            self.content.write(data)

    def body_read_past(self, size: int) -> None:
        """
        C{size} bytes of the body were taken from the socket by the body
        consumer itself (see L{twistbridge.izzati._splice}): count them, as
        the channel (which still ends the body when its last bytes arrive,
        through L{handleContentChunk}) and the body rate do.
        """
        self._body_received += size
        body_read_past(self.channel, size)

    def refuse_body(self, refusal: Refusal) -> None:
        """Answer C{refusal} now (as when a consumer's C{write} raises it)."""
        if not self._refused:
            self._refuse_with(refusal)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The body is complete: process the request (unless it was refused)."""
        self._body_complete = True
        if self._refused:
            return
        ctype = self.requestHeaders.getRawHeaders(b"content-type")
        if ctype is not None and _LINE_ENDS.search(ctype[0]):
            message = (
                "Bad Content-Type header: it holds a control character; send "
                "a media type such as application/json"
            )
            # (what Request.requestReceived would have set first)
            self.method, self.uri, self.clientproto = command, path, version
            self._answer_refusal(Refusal(400, message))
            return
        if ctype is not None and _not_a_form(ctype[0]):
            # Twisted would run the e-mail header parser on every POST's
            # Content-Type only to find out that it is not a form (about a
            # fifth of a JSON-RPC call's CPU): skip it when that is plain.
            skip_form_parsing(self)
        Request.requestReceived(self, command, path, version)

    def process(self) -> None:
        """Check the host of a request that did not come through L{gotLength}
        (HTTP/2), then process it as usual."""
        if not self._host_checked:
            self._host_checked = True
            refused = self._host_refusal()
            if refused is not None:
                self._answer_refusal(refused)
                return
        Request.process(self)

    def _answer_refusal(self, refusal: Refusal) -> None:
        """Log C{refusal} once and answer it as this request's response."""
        self._log_refusal(refusal.code, refusal.message)
        self.setResponseCode(refusal.code)
        self.setHeader(b"Content-Type", b"application/json")
        self.write(json.dumps({"error": refusal.message}).encode("utf-8"))
        self.finish()

    def write(self, data: bytes) -> None:
        """
        Write part of the response.  The first write on a
        L{BridgeChannel} sends the status line, the headers and C{data} in
        one write to the transport (Twisted's would make it two).
        """
        channel = self.channel
        if self.startedWriting or not isinstance(channel, BridgeChannel):
            Request.write(self, data)
            return
        channel._coalesce = True
        try:
            Request.write(self, data)
        finally:
            channel.flush_head()

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
        """Answer 413 (400 for a body on a bodiless method) now, stop reading
        the request, and close the connection."""
        limit = self._body_limit
        method = self.method.decode("ascii", "replace")
        path = self.path.decode("ascii", "replace")
        if limit == 0 and self._error_page == http.NOT_FOUND:
            code, message = http.NOT_FOUND, f"no resource at {path}"
        elif limit == 0:
            code = (
                http.BAD_REQUEST
                if self.method in _NO_BODY_METHODS
                else http.REQUEST_ENTITY_TOO_LARGE
            )
            message = f"{method} {path} takes no request body"
        else:
            code = http.REQUEST_ENTITY_TOO_LARGE
            size = f"{length} bytes" if length is not None else "a chunked body"
            message = f"request body too large: {size}, the limit is {limit} bytes"
        self._refuse_with(Refusal(code, message))

    def _refuse_with(self, refusal: Refusal) -> None:
        """Answer C{refusal} now, stop reading the request, and close."""
        self._refused = True
        self._abort_consumer(Failure(BodyTooLarge(refusal.message)))
        self._log_refusal(refusal.code, refusal.message)
        # No "100 Continue" for this request: the channel sends it after gotLength.
        self.requestHeaders.removeHeader(b"Expect")
        self._linger = answer_and_close(
            self.channel, refusal.code, refusal.message, refusal.headers
        )

    def _log_refusal(self, code: int, message: str) -> None:
        channel = self.channel
        assert channel.transport is not None  # refused while connected
        peer = getattr(channel.transport.getPeer(), "host", "?")
        line_method, line_uri = request_line(channel)
        method = line_method or self.method or b"?"
        uri = line_uri or self.uri or b"?"
        log.warn(
            "{code} for {method} {uri} from {peer}: {message}",
            code=code,
            method=method.decode("ascii", "replace"),
            uri=uri.decode("ascii", "replace"),
            peer=peer,
            message=message,
        )
        access_refused(method, uri.split(b"?", 1)[0], code)
