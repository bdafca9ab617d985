"""
The few Twisted (and autobahn) internals the bridge reads or sets, each in
one function that says why no public API does the job.  Nothing else in the
package touches a private attribute of a Twisted or autobahn object: when
one of these changes, this module is the one place to follow it.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Tuple

from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper


def request_line(channel: Any) -> Tuple[Optional[bytes], Optional[bytes]]:
    """
    The method and URI of the request whose headers C{channel} (an
    L{HTTPChannel<twisted.web.http.HTTPChannel>}) is reading, or
    C{(None, None)} where there is none (HTTP/2).

    Why private: C{Request.method} and C{Request.uri} are only set in
    C{requestReceived}, once the whole body is in; until then the request
    line is only kept by the channel, as C{_command} and C{_path}.  The
    early-body checks need it when the headers arrive.
    """
    return getattr(channel, "_command", None), getattr(channel, "_path", None)


def skip_form_parsing(request: Any) -> None:
    """
    Make C{request} (a L{twisted.web.http.Request}) leave its body unparsed
    as a form, from now on.

    Why private: Twisted's public switch is the C{parsePOSTFormSubmission}
    argument of C{Request} and C{Site}, fixed when the request is built,
    before its C{Content-Type} is known; the value it sets,
    C{_parsePOSTFormSubmission}, is read in C{requestReceived}.
    """
    request._parsePOSTFormSubmission = False


def connection_lost(request: Any) -> bool:
    """
    Whether the connection of C{request} (a L{twisted.web.http.Request})
    is gone.

    Why private: Twisted tells it publicly only asynchronously (the errback
    of C{notifyFinish()}); the flag it keeps, C{_disconnected}, answers now.
    """
    return bool(getattr(request, "_disconnected", False))


def http_switch_channel(protocol: Any) -> Any:
    """
    The channel under Twisted's HTTP/1.1-or-HTTP/2 switch (what
    C{Site.buildProtocol} returns: C{_GenericHTTPChannelProtocol}), or
    L{None} when C{protocol} is not such a switch.

    Why private: the switch forwards everything to its channel and offers
    no public name for it but C{_channel}.
    """
    return getattr(protocol, "_channel", None)


def error_page_code(resource: Any) -> Optional[int]:
    """
    The HTTP status of one of Twisted's error pages (C{pages.notFound()},
    C{pages.errorPage()}, the older C{resource.NoResource}), or L{None}.

    Why private: C{twisted.web.pages} keeps the status as C{_code}; only the
    deprecated C{resource.ErrorPage} has a public C{code}.
    """
    code = getattr(resource, "code", None)
    if code is None:
        code = getattr(resource, "_code", None)
    return code if isinstance(code, int) else None


def tcp_endpoint_address(endpoint: Any) -> Optional[Tuple[str, int]]:
    """
    The C{(interface, port)} a TCP server endpoint (C{TCP4ServerEndpoint},
    C{TCP6ServerEndpoint}) will bind, or L{None} for another endpoint.

    Why private: those endpoints keep what their description said as
    C{_interface} and C{_port}, and Twisted has no public parser of server
    descriptions; listening to find out would hold the port until the
    reactor runs.
    """
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

    if not isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        return None
    return endpoint._interface, endpoint._port


class _Call:
    """One timer of L{_ReactorTimer}: cancelling it twice, or once it ran, is
    a no-op (as autobahn expects of its batched calls)."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class _ReactorTimer:
    """What autobahn's factories use for their timers (an C{IBatchedTimer}):
    one C{callLater} on C{reactor} per timer, at its exact time."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, func: Any, *args: Any, **kwargs: Any) -> _Call:
        return _Call(self._reactor.callLater(delay, func, *args, **kwargs))


def plain_tcp_connection(transport: Any) -> Any:
    """
    The plain TCP server connection (a L{twisted.internet.tcp.Server}) that
    C{transport} writes to, or L{None} when there is none or it speaks TLS:
    the connection whose socket a response may write to directly (see
    L{write_buffer_empty}).

    Only L{ProtocolWrapper<twisted.protocols.policies.ProtocolWrapper>}s that
    forward C{write} unchanged (such as the connection limits') are looked
    through: a wrapper that changes what is written is never bypassed.

    Why private: the wrappers keep what they wrap as C{transport}, a public
    attribute of a protocol, but offer no way to ask what is underneath;
    the check for TLS started on a plain connection reads its C{TLS} flag,
    which only C{startTLS} documents.
    """
    target = _under_wrappers(transport)
    if type(target) is not tcp.Server or target.TLS:
        return None
    return target


def _under_wrappers(transport: Any) -> Any:
    """What C{transport} writes to once the write-forwarding wrappers are looked through."""
    target = transport
    while getattr(type(target), "write", None) is ProtocolWrapper.write:
        target = target.transport
    return target


def tls_connection(transport: Any) -> Any:
    """
    The TLS connection (a L{twisted.protocols.tls.TLSMemoryBIOProtocol})
    under C{transport}, looking through the same wrappers as
    L{plain_tcp_connection}, or L{None} when it is not TLS.

    Why private: as for L{plain_tcp_connection}, the wrappers offer no way
    to ask what is underneath; autobahn reads the TLS details of a
    connection only from the TLS protocol itself.
    """
    from twisted.protocols.tls import TLSMemoryBIOProtocol

    target = _under_wrappers(transport)
    return target if isinstance(target, TLSMemoryBIOProtocol) else None


def write_buffer_empty(connection: Any) -> bool:
    """
    Whether C{connection} (from L{plain_tcp_connection}) is open for writing
    and has sent all that was written to it, so that bytes sent on its
    socket now come after them.

    Why private: L{twisted.internet.abstract.FileDescriptor} keeps what it
    has not sent in C{dataBuffer} (from C{offset} on) and
    C{_tempDataBuffer}, its state in C{connected}, C{disconnecting} and
    C{_writeDisconnected}, and says so publicly only by pausing its producer
    once more than C{bufferSize} bytes wait.
    """
    return (
        connection.connected
        and not connection.disconnecting
        and not connection._writeDisconnected
        and not connection._tempDataBuffer
        and len(connection.dataBuffer) == connection.offset
    )


def websocket_data_received(protocol: Any, data: bytes) -> None:
    """
    Hand C{data}, just read from the socket, to the frame parser of
    C{protocol} (an autobahn WebSocket protocol on Twisted).

    Why private: autobahn's Twisted C{dataReceived} builds a debug log line
    on every read (type names and values marked up for a terminal, even
    with debug logging off: a twentieth of an Igor echo's CPU) and then
    calls C{_dataReceived}, its framework-independent parser, which has no
    public name.
    """
    protocol._dataReceived(data)


def websocket_timers_on(factory: Any, reactor: Any) -> None:
    """
    Run the timers of C{factory} (an autobahn WebSocket factory: opening and
    closing handshake timeouts, automatic pings) on C{reactor}.

    On txaio's reactor (the global one; or C{reactor} L{None}) autobahn's
    own timer stays: it batches the timers into buckets of whole seconds.
    On another reactor (a test's clock) each timer is one C{callLater} of
    C{reactor}, at its exact time.

    Why private: autobahn's Twisted factories take a C{reactor} argument
    but use it only to listen and connect; their protocols' timers go
    through the factory's C{_batched_timer}, which
    C{txaio.make_batched_timer} builds on txaio's one loop
    (C{txaio.config.loop}, which C{txaio.with_config} refuses to change),
    and neither library offers a timer on another reactor.
    """
    import txaio

    if reactor is None:
        return
    # txaio.config is bound once a framework is chosen (autobahn.twisted
    # chooses Twisted): its type information does not show it.
    loop = getattr(getattr(txaio, "config", None), "loop", None)
    if loop is None:
        loop = sys.modules.get("twisted.internet.reactor")
    if reactor is not loop:
        factory._batched_timer = _ReactorTimer(reactor)


def write_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it on the socket at once when
    nothing is waiting in the transport's buffer (what asyncio's transports
    do), else as C{transport.write(data)}.

    C{FileDescriptor.write} only buffers and asks the reactor to watch the
    socket for writing: every answer then costs two C{epoll_ctl} calls (on,
    off) and one more reactor iteration before its C{send}.  Sending here
    keeps the order of the bytes (only an empty buffer is bypassed), and
    what the socket does not take at once is left to C{transport.write}.

    Only a plain TCP connection is sent on directly (also under
    L{ProtocolWrapper<twisted.protocols.policies.ProtocolWrapper>}s that
    forward C{write} unchanged, such as the connection limits'); TLS, UNIX
    sockets and test transports get C{transport.write}.

    Why private: Twisted has no public "write now" and no public view of a
    transport's buffer (see L{write_buffer_empty}); the socket is
    C{tcp.Connection}'s C{socket}.
    """
    target = plain_tcp_connection(transport)
    if target is None or not data or not write_buffer_empty(target):
        transport.write(data)
        return
    try:
        sent = target.socket.send(data)
    except OSError:
        sent = 0  # would block, interrupted or broken: buffer it, as write does
    if sent < len(data):
        target.write(data[sent:])


def http_channel_idle(channel: Any) -> bool:
    """
    Whether C{channel} (a L{twisted.web.http.HTTPChannel}) is between
    requests: no request in it, nothing of the next one read, not inside
    its own parsing loop.  Bytes that arrive then start a new request, and
    may be read by the bridge's lean path (L{twistbridge._lean}) instead.

    Why private: the channel keeps where it is in the stream as
    C{LineReceiver}'s C{_buffer}, C{line_mode} and C{_busyReceiving} and
    as its own C{_handlingRequest}, C{_transferDecoder} and (name-mangled)
    C{__first_line}; only C{requests} is public.
    """
    return (
        not channel.requests
        and channel.line_mode
        and not channel._buffer
        and not channel._busyReceiving
        and not channel._handlingRequest
        and channel._transferDecoder is None
        and getattr(channel, "_HTTPChannel__first_line", 1) == 1
    )


def plain_tcp_reader(channel: Any) -> Any:
    """
    The plain TCP server connection (from L{plain_tcp_connection}) whose
    reads reach C{channel} (an L{HTTPChannel<twisted.web.http.HTTPChannel>})
    unchanged, or L{None}: TLS, UNIX sockets, test transports, and any
    protocol in between that does more with the bytes than pass them on.

    Only L{ProtocolWrapper<twisted.protocols.policies.ProtocolWrapper>}s
    that forward C{dataReceived} unchanged and Twisted's HTTP/1.1-or-HTTP/2
    switch are looked through.

    Why private: as for L{plain_tcp_connection}; the switch's channel is
    its C{_channel} (L{http_switch_channel}).
    """
    from twisted.web.http import _GenericHTTPChannelProtocol

    connection = plain_tcp_connection(channel.transport)
    if connection is None:
        return None
    protocol = connection.protocol
    for _ in range(16):
        if protocol is channel:
            return connection
        kind = type(protocol)
        if kind.dataReceived is ProtocolWrapper.dataReceived:
            protocol = protocol.wrappedProtocol
        elif kind.dataReceived is _GenericHTTPChannelProtocol.dataReceived:
            protocol = http_switch_channel(protocol)
        else:
            return None
    return None


def body_left(channel: Any) -> Optional[int]:
    """
    The bytes of the request body that C{channel} (an
    L{HTTPChannel<twisted.web.http.HTTPChannel>}) still expects, while it
    reads a body of known length (C{Content-Length}); L{None} otherwise
    (chunked, or no body in progress).

    Why private: the channel counts them in its transfer decoder
    (C{_transferDecoder}, an C{_IdentityTransferDecoder} for a
    C{Content-Length} body), which has no public name.
    """
    decoder: Any = getattr(channel, "_transferDecoder", None)
    if type(decoder) is not _identity_decoder() or decoder.dataCallback is None:
        return None
    left = decoder.contentLength
    return left if isinstance(left, int) else None


_IDENTITY: Any = None


def _identity_decoder() -> Any:
    # Looked up once: twisted.web.http is a module whose attribute reads go
    # through its deprecation proxy.
    global _IDENTITY
    if _IDENTITY is None:
        from twisted.web.http import _IdentityTransferDecoder

        _IDENTITY = _IdentityTransferDecoder
    return _IDENTITY


def body_read_past(channel: Any, size: int) -> None:
    """
    Tell C{channel} that C{size} bytes of the body it reads (see
    L{body_left}) were taken from its socket without passing through it:
    it then expects that many fewer, and still ends the body itself when
    the last of it arrives.

    Why private: see L{body_left}.
    """
    channel._transferDecoder.contentLength -= size


def take_reads(connection: Any, read: Any) -> None:
    """
    Make the reactor call C{read()} instead of C{connection.doRead()} when
    the socket of C{connection} (from L{plain_tcp_reader}) is readable,
    until L{give_back_reads}.  C{read} returns what C{doRead} would (L{None},
    or the reason the connection is lost).

    Its registration in the reactor, its writing, pausing and closing are
    untouched: only what happens on "readable" changes.

    Why private: a L{FileDescriptor<twisted.internet.abstract.FileDescriptor>}
    has no public way to let another object read its socket; a second
    reader of the same descriptor would share the reactor's one entry per
    descriptor with the connection's writing.  C{doRead} is the method the
    reactor calls (C{IReadDescriptor}); it is set on the instance only.
    """
    connection.doRead = read


def give_back_reads(connection: Any) -> None:
    """Undo L{take_reads}: C{connection} reads its socket itself again."""
    connection.__dict__.pop("doRead", None)
