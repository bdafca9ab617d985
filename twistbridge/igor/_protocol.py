"""
Igor's autobahn adapter: the WebSocket protocol, its factory, the C{/ws}
resource and the service that runs Igor processes.

Everything Igor-specific happens in the hub (L{twistbridge.igor._hub}) and
the pure core (L{twistbridge.igor._core}); this module only turns autobahn's
callbacks into hub calls and the hub's payloads into text frames::

    dataReceived -> handshake size cap (431 past MAX_HANDSHAKE_SIZE)
    onConnect  -> origin check (403 when refused)
    onOpen     -> hub.attach      (client id, session)
    onMessageFrameBegin -> fragment cap (1009 past MAX_FRAGMENTS)
    onMessage  -> hub.receive     (validate, dispatch, stream)
    onClose    -> hub.detach      (cancel pending calls, keep the session 10 s)

One hub per bridge is shared by the C{/ws} resource and the standalone port.

This module is longer than most because autobahn's callbacks (handshake
checks, frames, flow control, close) are one protocol class; the Igor
rules themselves are in the hub and the pure core.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any, Optional

from autobahn import util as autobahn_util
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from twistbridge._internals import (
    tls_connection,
    websocket_data_received,
    websocket_timers_on,
)
from twistbridge.hosts import host_allowed, refusal_message
from twistbridge.igor._hub import Hub
from twistbridge.logs import access_igor
from twistbridge.origins import origin_allowed

log = Logger(namespace="twistbridge.igor")


def check_handshake(protocol: Any, request: Any) -> None:
    """
    Refuse a WebSocket handshake on the standalone Igor port whose C{Host}
    is not served (C{onConnect} of an autobahn server protocol).  A factory
    without an C{allowed_host} attribute (C{/ws}, whose HTTP port checked
    the host already) is let through.

    @raise autobahn.websocket.types.ConnectionDeny: 421.
    """
    allowed = getattr(protocol.factory, "allowed_host", None)
    if allowed is None:
        return
    host = request.headers.get("host")
    local = (
        socket.gethostname(),
        str(getattr(protocol.transport.getHost(), "host", "")),
    )
    if host_allowed(host, allowed, local):
        return
    message = refusal_message(host or "")
    log.warn(
        "421 for a WebSocket handshake from {peer}: {message}",
        peer=request.peer,
        message=message,
    )
    protocol._logged_refusal = True
    raise ConnectionDeny(421, message)


def plain_autobahn_markup() -> None:
    """
    Make autobahn build plain strings, not colored (click) ones, for its
    debug log calls.

    It builds them on every frame sent and received, whether debug logging
    is on or not: with click installed that is about a third of the CPU
    time of a small message.  autobahn has no public switch for this, so
    this one helper sets its module flag; it runs when an Igor factory is
    built (the bridge serves Igor), not on import.  Plain strings carry the
    same text.
    """
    if getattr(autobahn_util, "_HAS_CLICK", False):
        autobahn_util._HAS_CLICK = False


_OPEN = WebSocketProtocol.STATE_OPEN
_CONNECTING = WebSocketProtocol.STATE_CONNECTING

#: Bytes a client may send before its opening handshake is complete (the
#: request line and headers, up to the blank line); more is answered 431.
MAX_HANDSHAKE_SIZE = 64 * 1024

#: Frames one message may arrive in (the first and its continuations); a
#: message in more is refused with close code 1009 (message too big).
MAX_FRAGMENTS = 1024

#: Frames handled from one client before the reactor serves the others:
#: a read can hold thousands of tiny frames, each costing the same work.
FRAMES_PER_TURN = 256

#: Unsent bytes a client may have queued, at least (see L{unsent_cap}).
MIN_UNSENT_CAP = 8 * 1024 * 1024


def unsent_cap(max_message_size: int) -> int:
    """
    How many bytes may wait for a client that stopped reading before it is
    disconnected: twice the largest message, and at least 8 MiB.
    """
    return max(MIN_UNSENT_CAP, 2 * max_message_size)


_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame_header(size: int) -> bytes:
    """
    The header of a final, unmasked WebSocket text frame of C{size} payload
    bytes (RFC 6455 section 5.2), as a server sends it.
    """
    if size < 126:
        return _SHORT.pack(0x81, size)
    if size < 65536:
        return _MEDIUM.pack(0x81, 126, size)
    return _LONG.pack(0x81, 127, size)


#: Handler threads waiting for a full write buffer to drain wait on this.
_flow = threading.Condition()
_flow_waiters = 0


def _wake_writers() -> None:
    if _flow_waiters:
        with _flow:
            _flow.notify_all()


@implementer(IPushProducer)
class _WriteWatch:
    """
    Registered as the transport's producer: the transport pauses it when its
    write buffer is full and resumes it once the client read enough.  What
    is written while paused is counted against the cap.
    """

    __slots__ = ("paused", "unsent")

    def __init__(self) -> None:
        self.paused = False
        self.unsent = 0

    def pauseProducing(self) -> None:
        """The transport's buffer is full."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The transport's buffer drained."""
        self.paused = False
        self.unsent = 0
        _wake_writers()

    def stopProducing(self) -> None:
        """The connection is gone."""


class IgorProtocol(WebSocketServerProtocol):
    """One Igor WebSocket connection (a connection of the hub)."""

    #: Copied from the factory's options when the connection opens.
    maxMessagePayloadSize: int
    client_id: Any = None
    streams: Any = None
    inflight = 0
    _watch: Optional[_WriteWatch] = None
    _logged_refusal = False
    _access: Optional[list] = None
    _queued = 0
    _pauses = 0
    _fragments = 0
    #: What arrived of the opening handshake; L{None} once it is complete.
    _handshake: Optional[bytearray] = None
    _handshake_done = False
    _turn_frames = 0
    _yielding = False
    #: The close code we sent when we refused a message (for the access log).
    _refused_code: Optional[int] = None

    def connectionMade(self) -> None:
        """
        Turn Nagle's algorithm off: autobahn sets TCP_NODELAY before it
        copies the factory's options, so its own call leaves it off.
        Without it every small reply waits for the client's delayed ACK.

        Over TLS, autobahn reads the connection's TLS details (at the
        connection and again at the handshake) from the TLS protocol itself,
        and refuses the connection limits' wrapper around it: the connection
        writes to the TLS protocol directly (the wrapper only forwards what
        is written, and still hears of the connection's end).
        """
        tls = tls_connection(self.transport)
        if tls is not None:
            self.transport = tls
        WebSocketServerProtocol.connectionMade(self)
        transport: Any = self.transport
        # TCP or TLS (or a UNIX socket): more than the ITransport it is typed as.
        try:
            transport.setTcpNoDelay(self.factory.tcpNoDelay)
        except Exception:  # not TCP (a UNIX socket)
            pass

    def dataReceived(self, data: bytes) -> None:
        """
        Before the opening handshake is complete, buffer what arrives here
        (autobahn copies and searches its whole buffer on every read) and
        hand it on once the blank line came: 431 when it did not come within
        L{MAX_HANDSHAKE_SIZE} bytes.
        """
        if self._handshake_done or self.state != _CONNECTING:
            if not self._yielding:
                self._turn_frames = 0
            websocket_data_received(self, data)
            return
        buffered = self._handshake
        if buffered is None:
            buffered = self._handshake = bytearray()
        start = max(0, len(buffered) - 3)
        buffered += data
        end = buffered.find(b"\r\n\r\n", start)
        if end < 0 or end + 4 > MAX_HANDSHAKE_SIZE:
            if len(buffered) > MAX_HANDSHAKE_SIZE or end >= 0:
                self._handshake = None
                self._handshake_done = True
                self.failHandshake(
                    f"Request headers over {MAX_HANDSHAKE_SIZE} bytes", 431
                )
            return
        self._handshake = None
        self._handshake_done = True
        WebSocketServerProtocol.dataReceived(self, bytes(buffered))

    def processData(self) -> bool:
        """
        Handle the next frame, unless L{FRAMES_PER_TURN} were handled since
        the last read: then pause reading and go on in the next reactor turn.
        """
        if self.current_frame is None and len(self.data) >= 2:
            self._turn_frames += 1
            if self._turn_frames > FRAMES_PER_TURN:
                if not self._yielding:
                    self._yielding = True
                    self.pause_reading()
                    self.factory.hub.reactor.callLater(0, self._next_turn)
                return False
        return WebSocketServerProtocol.processData(self)

    def _next_turn(self) -> None:
        self._yielding = False
        self._turn_frames = 0
        if self.state in (_OPEN, WebSocketProtocol.STATE_CLOSING):
            self.consumeData()
        if self.transport is not None:
            self.resume_reading()

    def onConnect(self, request: Any) -> None:
        """Refuse the handshake (421, 403) when the C{Host} or C{Origin} is not allowed."""
        check_handshake(self, request)
        origin = request.headers.get("origin")
        if not origin_allowed(origin, self.factory.allowed_origins):
            log.warn(
                "igor refused a WebSocket from {peer}: origin {origin} is not allowed",
                peer=request.peer,
                origin=origin,
            )
            self._logged_refusal = True
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "Origin not allowed")
        return None

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Any = None
    ) -> None:
        """
        Answer a bad handshake with its HTTP error and close, logging one line
        (autobahn's own logs two: an info and a "dropping connection" warning).
        """
        if not self._logged_refusal:
            log.info(
                "igor refused a WebSocket handshake from {peer}: {code} {reason}",
                peer=self.peer,
                code=code,
                reason=reason,
            )
        self.wasNotCleanReason = reason
        self.sendHttpErrorResponse(code, reason, responseHeaders)
        self.wasClean = True  # refused on purpose: no "unclean" warning
        self.dropConnection(abort=False)

    def onOpen(self) -> None:
        """Watch the write buffer and join the hub."""
        # A producer and consumer too, not only the ITransport it is typed as.
        transport: Any = self.transport
        self._access = [transport.getPeer(), time.monotonic(), 0, 0]
        self._watch = _WriteWatch()
        try:
            # Over /ws the HTTP channel is still the transport's producer.
            transport.unregisterProducer()
            transport.registerProducer(self._watch, True)
        except Exception:  # a transport without flow control
            self._watch = None
        self.factory.hub.attach(self)

    def onMessageBegin(self, isBinary: bool) -> None:
        """A message starts: count its frames from zero."""
        self._fragments = 0
        WebSocketServerProtocol.onMessageBegin(self, isBinary)

    def onMessageFrameBegin(self, length: int) -> None:
        """
        Refuse a message in more than L{MAX_FRAGMENTS} frames: close with
        1009 and stop reading (each frame costs the reactor the same work,
        however small it is).
        """
        self._fragments += 1
        if self._fragments > MAX_FRAGMENTS and not self.failedByMe:
            log.info(
                "igor client {client_id}: message in more than {n} frames: closing",
                client_id=self.client_id,
                n=MAX_FRAGMENTS,
            )
            self.failedByMe = True
            self._refused_code = WebSocketProtocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG
            self.sendCloseFrame(
                WebSocketProtocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG,
                f"Message in more than {MAX_FRAGMENTS} frames".encode(),
                isReply=False,
            )
            self.wasClean = True  # refused on purpose: no "unclean" warning
            self.dropConnection(abort=False)
            return
        WebSocketServerProtocol.onMessageFrameBegin(self, length)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Hand the message to the hub (binary frames must hold UTF-8 JSON too)."""
        if self._access is not None:
            self._access[2] += 1
        self.factory.hub.receive(self, payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        """Leave the hub (cancels this client's pending calls)."""
        if self._access is not None:
            peer, opened, received, sent = self._access
            self._access = None
            access_igor(
                peer,
                getattr(self, "http_request_path", "/") or "/",
                code if code is not None else self._refused_code,
                time.monotonic() - opened,
                received,
                sent,
                self.client_id,
            )
        self.factory.hub.detach(self)
        _wake_writers()

    def wait_writable(self, stream: Any, size: int) -> bool:
        """
        From a handler thread, before it queues C{size} bytes for this
        client: wait while the client's write buffer is full (it is not
        reading) or threads already queued a full buffer's worth that the
        reactor has not written yet, so that a thread sending in a loop is
        slowed to the client's pace instead of queueing data without bound.
        Returns once there is room (L{True}), or the stream closed or the
        connection is closing or gone (L{False}: the payload will be dropped).
        """
        global _flow_waiters
        watch = self._watch
        limit = self.factory.unsent_cap
        with _flow:
            _flow_waiters += 1
            try:
                while (
                    (self._queued > limit or (watch is not None and watch.paused))
                    and not stream.closed
                    and self.state == _OPEN
                ):
                    _flow.wait(1.0)
                    watch = self._watch
                self._queued += size
                return self.state == _OPEN and not stream.closed
            finally:
                _flow_waiters -= 1

    def write_queued(self, payload: bytes) -> None:
        """L{write} a payload a thread queued through L{wait_writable}."""
        with _flow:
            self._queued -= len(payload)
        self.write(payload)
        _wake_writers()

    def write(self, payload: bytes) -> None:
        """Send one text frame (reactor thread); dropped once the socket closes."""
        if self.state != _OPEN:
            return
        size = len(payload)
        if (
            self._perMessageCompress is None
            and not self.send_queue
            and not 0 < self.maxMessagePayloadSize < size
        ):
            # What sendMessage ends in for one unmasked, unfragmented,
            # uncompressed text frame (the server's frames: see configure),
            # without its per-frame assertions and debug line (a sixth of
            # an echo's CPU).  Too large a payload goes through sendMessage,
            # which refuses it.
            transport: Any = self.transport
            transport.write(text_frame_header(size) + payload)
        else:
            self.sendMessage(payload, False)
        self._sent(size)

    def _sent(self, size: int) -> None:
        # Counted for the access log, and against the cap of a client that
        # stopped reading.
        if self._access is not None:
            self._access[3] += 1
        watch = self._watch
        if watch is not None and watch.paused:
            watch.unsent += size
            if watch.unsent > self.factory.unsent_cap:
                log.warn(
                    "igor client {client_id} stopped reading: disconnected with "
                    "more than {cap} bytes unsent",
                    client_id=self.client_id,
                    cap=self.factory.unsent_cap,
                )
                self.abort()

    def prepare(self, payload: bytes) -> PreparedMessage:
        """A text frame of C{payload} framed once, for L{write_prepared}."""
        return PreparedMessage(payload, False, False, True)

    def write_prepared(self, prepared: PreparedMessage, size: int) -> None:
        """L{write} a frame made by L{prepare} (C{size}: its payload's length)."""
        if self.state != _OPEN:
            return
        if self._perMessageCompress is None and not self.send_queue:
            # What sendPreparedMessage ends in, without sendData's debug
            # line built for every frame (a third of a broadcast's cost).
            transport: Any = self.transport
            transport.write(prepared.payloadHybi)
        else:
            self.sendPreparedMessage(prepared)
        self._sent(size)

    def go_away(self) -> None:
        """Close with 1001 (going away): the server is shutting down."""
        # sendClose() only takes 1000 and 3000-4999 (application codes);
        # 1001 is the server's own code, sent through the frame-level call.
        if self.state == _OPEN:
            self.sendCloseFrame(
                WebSocketProtocol.CLOSE_STATUS_CODE_GOING_AWAY,
                b"Server is shutting down",
            )

    def abort(self) -> None:
        """Drop the connection now, discarding what was not sent."""
        # Not dropConnection(): that logs a second time.  onClose still
        # follows, from connectionLost.
        self.state = WebSocketProtocol.STATE_CLOSED
        transport: Any = self.transport  # a TCP/TLS one (abortConnection)
        if transport is not None:
            transport.unregisterProducer()
            transport.abortConnection()

    def pause_reading(self) -> None:
        """
        Stop reading from this client (too many streams in flight, or a
        large message being parsed); every call is undone by one
        L{resume_reading}.
        """
        self._pauses += 1
        if self._pauses == 1:
            transport: Any = self.transport  # a producer too
            transport.pauseProducing()

    def resume_reading(self) -> None:
        """Undo one L{pause_reading}: read again once none is left."""
        self._pauses -= 1
        if self._pauses == 0:
            transport: Any = self.transport  # a producer too
            transport.resumeProducing()


class IgorFactory(WebSocketServerFactory):
    """
    The WebSocket factory of one Igor listener.

    @param reactor: the reactor it listens on and runs its timers on
        (handshake timeouts, automatic pings; L{None}: the global one).
    @ivar hub: the bridge's L{Hub}.
    @ivar allowed_origins: extra allowed origins (C{igor_allowed_origin}).
    @ivar unsent_cap: bytes a non-reading client may have queued.
    """

    protocol = IgorProtocol
    noisy = False

    def __init__(self, hub: Hub, settings: Any, reactor: Any = None) -> None:
        plain_autobahn_markup()
        WebSocketServerFactory.__init__(self, reactor=reactor)
        websocket_timers_on(self, reactor)
        self.hub = hub
        self.allowed_origins = tuple(settings.igor_allowed_origin)
        self.unsent_cap = unsent_cap(settings.max_message_size)
        configure(self, settings)


def configure(factory: WebSocketServerFactory, settings: Any) -> None:
    """
    Set every autobahn server option explicitly.

    autobahn accepts every origin and unlimited messages by default, and
    C{setProtocolOptions} resets C{allowNullOrigin} whenever it is omitted:
    the origin check is ours (L{origin_allowed}, in C{onConnect}), so
    autobahn's own is opened fully here, and sizes come from the settings.
    """
    idle = float(settings.idle_timeout)
    factory.setProtocolOptions(
        versions=[8, 13],
        webStatus=False,
        utf8validateIncoming=True,
        maskServerFrames=False,
        requireMaskedClientFrames=True,
        applyMask=True,
        maxFramePayloadSize=settings.max_message_size,
        maxMessagePayloadSize=settings.max_message_size,
        autoFragmentSize=0,
        failByDrop=False,
        echoCloseCodeReason=False,
        openHandshakeTimeout=float(
            getattr(settings, "message_timeout", settings.header_timeout)
        ),
        closeHandshakeTimeout=1.0,
        tcpNoDelay=True,
        perMessageCompressionAccept=lambda offers: None,
        autoPingInterval=idle,
        autoPingTimeout=idle,
        autoPingSize=12,
        autoPingRestartOnAnyTraffic=True,
        serveFlashSocketPolicy=False,
        allowedOrigins=["*"],
        allowNullOrigin=True,
        maxConnections=0,
        trustXForwardedFor=0,
    )


# what the rest of twistbridge builds ------------------------------------------


def build_factory(hub: Hub, settings: Any, reactor: Any = None) -> IgorFactory:
    """
    The factory of the standalone Igor port (any path; Igor clients use C{/}).

    @param reactor: the reactor of its timers (L{None}: the global one).
    """
    return IgorFactory(hub, settings, reactor=reactor)


def build_resource(hub: Hub, settings: Any, reactor: Any = None) -> WebSocketResource:
    """
    The C{/ws} resource of the HTTP port.

    @param reactor: the reactor of its timers (L{None}: the global one).
    """
    return WebSocketResource(IgorFactory(hub, settings, reactor=reactor))
