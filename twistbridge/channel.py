"""
The HTTP/1.1 connection of a bridge's HTTP port (L{BridgeChannel}): a header
timeout and a minimum body rate on top of Twisted's idle timeout, the lean
path of plain JSON-RPC calls (L{twistbridge._lean}), and the way a refused
request is answered (L{answer_and_close}).

This module is longer than most: the channel's clocks, its writes and its
lean path all follow the one place in the stream where the channel is.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from twistbridge._internals import http_channel_idle, write_now
from twistbridge._lean import LeanRequest, answer_head, parse_request

log = Logger()

#: Seconds a refused request's connection stays half-open, discarding what
#: the client still sends, before it is closed.
REFUSAL_LINGER = 5.0


class BodyTooSlow(Exception):
    """A request body fell under the channel's C{min_body_rate}."""


def _discard(data: bytes) -> None:
    """Drop bytes a refused request's client still sends."""


_REASONS = {
    408: b"Request Timeout",
    421: b"Misdirected Request",
    507: b"Insufficient Storage",
}


def answer_and_close(
    channel: Any, code: int, message: str, headers: Iterable[Tuple[bytes, bytes]] = ()
) -> Any:
    """
    Write C{code} with C{{"error": message}} straight to C{channel}'s
    transport, parse nothing more from it, and close it once the answer is
    out.  Our side closes at once, but the connection is read (and what
    arrives dropped) for L{REFUSAL_LINGER} seconds more: closing with unread
    data would send the client a reset that can destroy the answer before
    it reads it.

    @return: the delayed call that ends the lingering, or L{None}.
    """
    transport = channel.transport
    body = json.dumps({"error": message}).encode("utf-8")
    reason = _REASONS.get(code) or http.RESPONSES.get(code, b"Error")
    extra = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
    transport.write(
        b"HTTP/1.1 %d %s\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n%s"
        b"Connection: close\r\n\r\n%s" % (code, reason, len(body), extra, body)
    )
    channel.persistent = False
    channel.dataReceived = _discard
    channel.rawDataReceived = _discard
    lose_write = getattr(transport, "loseWriteConnection", None)
    if lose_write is not None:
        lose_write()
        return channel.callLater(REFUSAL_LINGER, transport.abortConnection)
    transport.loseConnection()
    return None


_TIMEOUT_BODY = b'{"error": "request headers took too long"}'
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class BridgeChannel(HTTPChannel):
    """
    An HTTP/1.1 channel with a header timeout and a minimum body rate on top
    of Twisted's idle timeout.

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

    The body is held to the same kind of bound: once the headers are in,
    every C{body_window} seconds the client must have sent at least
    C{min_body_rate} bytes per second of it over that window (or the rest of
    the body, if that is less), else C{408} and the connection is closed.
    The timer is only set when a body did not arrive with its headers.

    @ivar header_timeout: seconds, or L{None} for no header timeout.
    @ivar min_body_rate: bytes per second, or 0 for no minimum.
    @ivar body_window: the seconds the body rate is averaged over.
    """

    header_timeout: Optional[float] = None
    min_body_rate = 0
    body_window = 60.0
    #: what tells the time (the site's reactor; see L{BridgeSite.buildProtocol})
    _clock: Any = None
    _header_call: Any = None
    _header_since: Optional[float] = None
    _awaiting_headers = True
    _body_request: Any = None
    _body_length: Optional[int] = None
    _body_mark = 0
    _body_call: Any = None
    _linger: Any = None
    #: set by L{BridgeRequest.write<twistbridge.request.BridgeRequest.write>}
    #: around a response's first write: the status line and headers wait
    #: in C{_head} and go out with the first piece of the body
    _coalesce = False
    _head: Optional[bytes] = None

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        """
        Write a response's status line and headers (as Twisted's channel
        does), or keep them for the body to follow in the same write while
        C{_coalesce} is set: one C{send} per plain answer instead of two.
        """
        if not isinstance(headers, Headers):
            HTTPChannel.writeHeaders(self, version, code, reason, headers)
            return
        seq = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                seq.extend((name, b": ", value, b"\r\n"))
        seq.append(b"\r\n")
        head = b"".join(seq)
        if self._coalesce:
            self._head = head
        else:
            write_now(self.transport, head)

    def write(self, data: bytes) -> None:
        """Write response bytes (after the headers kept for them), at once
        when the transport's buffer is empty (L{write_now})."""
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        write_now(self.transport, data)

    def writeSequence(self, iovec: Any) -> None:
        """Write response bytes given as a list, as one L{write}."""
        self.write(b"".join(iovec))

    def flush_head(self) -> None:
        """Stop keeping headers back; write those kept, if any."""
        self._coalesce = False
        head = self._head
        if head is not None:
            self._head = None
            write_now(self.transport, head)

    def dataReceived(self, data: bytes) -> None:
        """Answer the plain calls at the start of C{data} on the lean path;
        for the rest, start the header clock at a request's first byte, the
        body clock when a body is still to come."""
        if self._lean_wait is not None:
            self._lean_hold(data)
            return
        if self._lean_site is not False and http_channel_idle(self):
            data = self._lean(data)
            if not data:
                return
        if (
            self._awaiting_headers
            and self._header_since is None
            and self.header_timeout
        ):
            self._header_since = self._now()
            if self._header_call is None:
                self._header_call = self.callLater(
                    self.header_timeout, self._check_headers
                )
        HTTPChannel.dataReceived(self, data)
        request = self._body_request
        if request is not None and self._body_call is None:
            if request._body_complete or request._refused:
                self._body_request = None
            else:
                self._body_mark = request._body_received
                self._body_call = self.callLater(self.body_window, self._check_body)

    def allHeadersReceived(self) -> None:
        """The headers are complete in time: stop the clock."""
        self._awaiting_headers = False
        self._header_since = None
        length = self.length
        HTTPChannel.allHeadersReceived(self)
        if self.min_body_rate and length != 0 and self.requests:
            self._body_request = self.requests[-1]
            self._body_length = length
            call, self._body_call = self._body_call, None
            if call is not None and call.active():
                call.cancel()  # the previous request's window

    def requestDone(self, request: Any) -> None:
        """The next bytes belong to the next request's headers."""
        self._awaiting_headers = True
        HTTPChannel.requestDone(self, request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop the clocks."""
        self._header_since = None
        self._body_request = None
        self._lean_backlog = None
        for name in ("_header_call", "_body_call", "_linger"):
            call = getattr(self, name)
            setattr(self, name, None)
            if call is not None and call.active():
                call.cancel()
        HTTPChannel.connectionLost(self, reason)

    _host: Any = None
    _peer: Any = None

    def getPeer(self) -> Any:
        """The client's address, asked of the socket once per connection."""
        peer = self._peer
        if peer is None:
            peer = self._peer = HTTPChannel.getPeer(self)
        return peer

    def getHost(self) -> Any:
        """This end's address, asked of the socket once per connection
        (every request reads it)."""
        host = self._host
        if host is None:
            host = self._host = HTTPChannel.getHost(self)
        return host

    # the lean path -------------------------------------------------------

    #: the site whose resources answer on the lean path; L{False} when it
    #: has none (not a plain bridge site); L{None} until the first read
    _lean_site: Any = None
    #: the last C{Host} value found allowed on this connection
    _lean_host: Optional[bytes] = None
    #: the lean request whose answer is pending, and what came after it
    _lean_wait: Optional[LeanRequest] = None
    _lean_backlog: Optional[list] = None
    _lean_paused = False
    _lean_timeout: Any = None

    #: bytes held behind a pending lean answer before the socket is paused
    LEAN_BACKLOG = 64 * 1024

    def _lean(self, data: bytes) -> bytes:
        """
        Answer the plain calls at the start of C{data} (see
        L{twistbridge._lean}); the rest, from the first request the lean
        path does not answer, is returned for twisted.web to read.
        """
        site = self._lean_site
        if site is None:
            site = getattr(self, "site", None)
            ok = getattr(site, "lean_resource", None)
            site = self._lean_site = site if ok is not None else False
            if site is False:
                return data
        reset = True
        at = 0  # where the next request starts in data
        while True:
            if not self.persistent:
                return data[at:]
            parsed = parse_request(data, at)
            if parsed is None:
                return data[at:]
            request, stop = parsed
            host = request.headers[b"host"]
            if host != self._lean_host:
                if not site.host_allowed(host.decode("latin-1"), self):
                    return data[at:]  # answered 421 by twisted.web's path
                self._lean_host = host
            resource = site.lean_resource(request.path)
            if resource is None:
                return data[at:]
            request.client = self.getPeer()
            try:
                answer = resource.lean_answer(request)
            except Exception:
                # a call may have run: not one to hand to twisted.web again
                log.failure("{resource!r} failed on the lean path", resource=resource)
                self._linger = answer_and_close(
                    self, http.INTERNAL_SERVER_ERROR, "internal server error"
                )
                return b""
            if answer is None:
                return data[at:]
            if reset:
                reset = False
                self.resetTimeout()
            at = stop
            if isinstance(answer, Deferred):
                self._lean_pending(request, answer, data[at:])
                return b""
            if not self._lean_send(request, answer) or at == len(data):
                return b""

    def _lean_send(self, request: LeanRequest, body: bytes) -> bool:
        """Write the answer C{body} to C{request}, log it; whether the
        connection stays open for the next request."""
        if not self.persistent:
            request.close = True
        self.write(answer_head(request, len(body)) + body)
        request.sentLength = len(body)
        self._lean_site.log(request)
        if request.close:
            self.persistent = False
            self.loseConnection()
            return False
        return True

    def _lean_pending(self, request: LeanRequest, d: Deferred, rest: bytes) -> None:
        """Wait for the answer C{d} to C{request}, holding what came after it."""
        self._lean_wait = request
        self._lean_backlog = []
        self.requests.append(request)
        if self.timeOut:
            # as twisted.web does while a request is answered
            self._lean_timeout = self.setTimeout(None)
        if rest:
            self._lean_hold(rest)
        d.addBoth(self._lean_done, request)

    def _lean_hold(self, data: bytes) -> None:
        """Keep C{data} for after the pending answer; pause the socket once
        L{LEAN_BACKLOG} bytes wait."""
        backlog = self._lean_backlog
        assert backlog is not None
        backlog.append(data)
        if not self._lean_paused and sum(map(len, backlog)) > self.LEAN_BACKLOG:
            self._lean_paused = True
            transport: Any = self.transport
            transport.pauseProducing()

    def _lean_done(self, body: Any, request: LeanRequest) -> None:
        """The pending answer is C{body}: write it, then read what waited."""
        self._lean_wait = None
        backlog, self._lean_backlog = self._lean_backlog or [], None
        if request in self.requests:
            self.requests.remove(request)
        transport: Any = self.transport
        if request.lost or transport is None:
            return
        if self._lean_timeout is not None:
            self.setTimeout(self._lean_timeout)
            self._lean_timeout = None
        if isinstance(body, Failure):
            log.failure("the lean answer failed", body)
            transport.abortConnection()
            return
        open_ = self._lean_send(request, body)
        request.finished()
        if self._lean_paused:
            self._lean_paused = False
            transport.resumeProducing()
        if open_ and backlog:
            self.dataReceived(b"".join(backlog))

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
        timeout = self.header_timeout
        assert timeout is not None  # armed only with a header timeout
        left = since + timeout - self._now()
        if left > 0:
            self._header_call = self.callLater(left, self._check_headers)
            return
        self._headers_too_slow()

    def _headers_too_slow(self) -> None:
        self._header_since = None
        assert self.transport is not None  # timers stop when the connection is lost
        log.info(
            "408 for {peer}: request headers not complete within {timeout} s",
            peer=getattr(self.transport.getPeer(), "host", "?"),
            timeout=self.header_timeout,
        )
        self.transport.write(REQUEST_TIMEOUT)
        self.dataReceived = _discard  # type: ignore[method-assign]
        self.loseConnection()

    def _check_body(self) -> None:
        self._body_call = None
        request = self._body_request
        if request is None or request._body_complete or request._refused:
            self._body_request = None
            return
        received = request._body_received
        needed = int(self.min_body_rate * self.body_window)
        if self._body_length is not None:
            needed = min(needed, self._body_length - self._body_mark)
        if received - self._body_mark < needed:
            self._body_too_slow(request, received)
            return
        self._body_mark = received
        self._body_call = self.callLater(self.body_window, self._check_body)

    def _body_too_slow(self, request: Any, received: int) -> None:
        self._body_request = None
        assert self.transport is not None  # timers stop when the connection is lost
        got = received - self._body_mark
        log.info(
            "408 for {peer}: request body too slow ({got} bytes in {window} s, "
            "{received} in all)",
            peer=getattr(self.transport.getPeer(), "host", "?"),
            got=got,
            window=self.body_window,
            received=received,
        )
        request._refused = True
        request._abort_consumer(Failure(BodyTooSlow("request body too slow")))
        self._linger = answer_and_close(
            self,
            http.REQUEST_TIMEOUT,
            body_too_slow(self.min_body_rate, self.body_window),
        )


def body_too_slow(rate: int, window: float) -> str:
    """The message of a C{408} for a body under C{rate} bytes/s over C{window} s."""
    return (
        f"request body too slow: send at least {rate} bytes per second "
        f"(--min-body-rate) over every {window:g} s"
    )
