"""
The lean path of the bridge's HTTP channel: what it reads and writes.

A plain C{POST} that came in whole in one read -- request line, headers
and the C{Content-Length} body -- to a resource offering C{lean_answer}
(the JSON-RPC paths) is answered by L{BridgeChannel
<twistbridge.channel.BridgeChannel>} without a twisted.web C{Request}, its
C{Headers} or a walk of the resource tree per request: L{parse_request}
reads it into a L{LeanRequest}, the resource answers it (or declines, and
nothing has happened), L{answer_head} is the status line and headers
twisted.web would have written, to the byte.

Anything this module does not read plainly is left to twisted.web, whole:
another method, a request split over reads, a query string or an escaped
path, a header not in L{LEAN_HEADERS} or one given twice, a folded header
line, a bare CR or LF (or another byte Python's C{str.splitlines} ends a
line at), more than L{MAX_LINES} lines or L{MAX_HEAD} bytes of
head, no C{Host}, no C{Content-Length} (so no chunked body), an
C{Expect}, a C{Connection} value other than C{keep-alive} or C{close}, any
HTTP version but 1.0 and 1.1.
"""

from __future__ import annotations

import re
from time import monotonic, time
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.server import version as SERVER_VERSION

#: The request headers the lean path reads or may ignore: what twisted.web
#: does with any other (C{Transfer-Encoding}, C{Expect}, C{Upgrade},
#: C{Cookie}, C{Authorization}...) is left to it.
LEAN_HEADERS = frozenset(
    {
        b"host",
        b"content-type",
        b"content-length",
        b"connection",
        b"user-agent",
        b"accept",
        b"accept-encoding",
        b"accept-language",
        b"cache-control",
        b"pragma",
        b"origin",
        b"referer",
        b"x-requested-with",
    }
)

#: The usual spellings of those names, to their lower-case form.
_NAMES = {
    spelling: name
    for name in LEAN_HEADERS
    for spelling in (
        name,
        b"-".join(part.capitalize() for part in name.split(b"-")),
    )
}

#: At most this many lines of head (the request line and its headers).
MAX_LINES = 24
#: At most this many bytes of head.
MAX_HEAD = 8192

#: A path without a query string and without escapes, in the printable
#: characters twisted.web accepts.
_PATH = re.compile(rb"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*\Z")
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
#: The bytes a head the lean path reads has only as its line ends (CR LF).
_NOT_IN_HEAD = b"\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85"


class LeanRequest:
    """
    One request read by the lean path: what a resource's C{lean_answer}
    reads, and what the access log and the metrics read of an answered
    request (the attributes and methods of a twisted.web C{Request} they
    use).

    While its answer is pending it stands in the channel's C{requests}, as
    a twisted.web request would, so that a graceful drain waits for it
    (C{startedWriting}, C{setHeader}, C{notifyFinish}) and a lost
    connection cancels it (C{connectionLost}).

    @ivar uri: the request target (a path: no query string).
    @ivar path: the same.
    @ivar clientproto: C{HTTP/1.1} or C{HTTP/1.0}.
    @ivar headers: the request's headers by lower-case name.
    @ivar body: the whole body.
    @ivar close: whether the connection closes after the answer.
    @ivar client: the peer's address.
    @ivar started: C{time.monotonic()} when it was read.
    @ivar cancel: what stops its pending answer when the connection is lost.
    """

    __slots__ = (
        "uri",
        "path",
        "clientproto",
        "headers",
        "body",
        "close",
        "client",
        "started",
        "sentLength",
        "_body_received",
        "cancel",
        "lost",
        "_notify",
    )

    method = b"POST"
    code = 200
    startedWriting = False

    def __init__(
        self,
        uri: bytes,
        version: bytes,
        headers: Dict[bytes, bytes],
        body: bytes,
        close: bool,
    ) -> None:
        self.uri = self.path = uri
        self.clientproto = version
        self.headers = headers
        self.body = body
        self.close = close
        self.client: Any = None
        self.started = monotonic()
        self.sentLength = 0
        self._body_received = len(body)
        self.cancel: Any = None
        self.lost = False
        self._notify: List[Deferred] = []

    def getHeader(self, name: bytes) -> Optional[bytes]:
        """The value of request header C{name}, or L{None}."""
        return self.headers.get(name.lower())

    def getClientAddress(self) -> Any:
        """The peer's address."""
        return self.client

    def setHeader(self, name: bytes, value: bytes) -> None:
        """Only C{Connection: close} is heeded (a drain asks for it)."""
        if name.lower() == b"connection" and value.lower() == b"close":
            self.close = True

    def notifyFinish(self) -> Deferred:
        """A L{Deferred} fired once the answer is written (failed if the
        connection is lost first)."""
        d: Deferred = Deferred()
        self._notify.append(d)
        return d

    def finished(self) -> None:
        """The answer is written."""
        waiting, self._notify = self._notify, []
        for d in waiting:
            d.callback(None)

    def connectionLost(self, reason: Failure) -> None:
        """The connection went away before the answer: stop the call."""
        self.lost = True
        cancel, self.cancel = self.cancel, None
        if cancel is not None:
            cancel()
        waiting, self._notify = self._notify, []
        for d in waiting:
            d.errback(reason)


def parse_request(data: bytes, at: int = 0) -> Optional[Tuple[LeanRequest, int]]:
    """
    The plain C{POST} at offset C{at} of C{data}, and where it ends in
    C{data}; L{None} when C{data} does not go on with a whole one the lean
    path reads (see the module docstring).
    """
    if not data.startswith(b"POST /", at):
        return None
    end = data.find(b"\r\n\r\n", at, at + MAX_HEAD)
    if end < 0:
        return None
    head = data[at:end]
    lines = head.split(b"\r\n")
    count = len(lines)
    # no CR, LF or NUL but the line ends, nor what Python's str.splitlines
    # takes for a line end (twisted.web's Content-Type parser raises on it)
    if count > MAX_LINES or len(head.translate(None, _NOT_IN_HEAD)) != len(head) - 2 * (
        count - 1
    ):
        return None
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    uri, version = parts[1], parts[2]
    if version not in _VERSIONS or _PATH.match(uri) is None:
        return None
    headers: Dict[bytes, bytes] = {}
    names = _NAMES
    for i in range(1, count):
        name, colon, value = lines[i].partition(b":")
        key = names.get(name)
        if key is None:
            key = name.lower()
            if key not in LEAN_HEADERS:
                return None
        if not colon or key in headers:
            return None
        headers[key] = value.strip(b" \t")
    length = headers.get(b"content-length")
    if (
        length is None
        or b"host" not in headers
        or not length.isdigit()
        or len(length) > 9
    ):
        return None
    start = end + 4
    stop = start + int(length)
    if len(data) < stop:
        return None
    connection = headers.get(b"connection")
    if connection is None:
        close = version != b"HTTP/1.1"
    else:
        connection = connection.lower()
        if connection == b"close":
            close = True
        elif connection == b"keep-alive":
            close = version != b"HTTP/1.1"
        else:
            return None
    return LeanRequest(uri, version, headers, data[start:stop], close), stop


_date: List[Any] = [None, b""]


def http_date() -> bytes:
    """C{Date} as twisted.web writes it, formatted once a second."""
    now = time()
    second = int(now)
    if second != _date[0]:
        _date[1] = datetimeToString(second)
        _date[0] = second
    return _date[1]


def answer_head(request: LeanRequest, length: int) -> bytes:
    """
    The status line and headers of a C{200} JSON answer of C{length}
    bytes to C{request}: the bytes twisted.web writes for it (C{Connection:
    close} first when an HTTP/1.1 connection closes, then C{Server},
    C{Date}, C{Content-Type}, C{Content-Length}).
    """
    version = request.clientproto
    close = (
        b"Connection: close\r\n" if request.close and version == b"HTTP/1.1" else b""
    )
    return (
        b"%s 200 OK\r\n%sServer: %s\r\nDate: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (version, close, SERVER_VERSION, http_date(), length)
    )
