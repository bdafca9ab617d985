"""
The producer that streams a L{file_return} to the client.

On a plain TCP connection (no TLS) the file goes to the socket with
C{os.sendfile}: the kernel copies it from the page cache, the bytes never
pass through Python.  It is used only while the connection's write buffer
is empty, so that it never overtakes what Twisted still holds (the headers,
at first); when the socket is full, one L{FALLBACK_CHUNK} is read and
written through the request as usual, which pauses the producer until the
client has read it.  On TLS, HTTP/2 or a file that C{sendfile} refuses,
every piece goes through the request, L{CHUNK} bytes at a time.
"""

from __future__ import annotations

import os
from typing import IO, Any, Callable, Optional

from twisted.internet.interfaces import IPullProducer
from twisted.logger import Logger
from zope.interface import implementer

from twistbridge._internals import (
    connection_lost,
    plain_tcp_connection,
    write_buffer_empty,
)

log = Logger()

#: Bytes read and written through the request at a time without sendfile.
CHUNK = 256 * 1024
#: Bytes written through the request when the socket is full: more than the
#: transport's buffer (64 KiB), so that the transport pauses the producer
#: until the client has read them.
FALLBACK_CHUNK = 128 * 1024
#: Most bytes one sendfile call may send (the reactor serves others between).
SENDFILE_MAX = 4 * 1024 * 1024


#: The outcomes L{FileProducer} reports.
SENT, STOPPED, SHORT = "sent", "stopped", "short"


@implementer(IPullProducer)
class FileProducer:
    """
    Send C{size} bytes of C{file} as the body of C{request}, then call
    C{done(outcome)}: L{SENT} once every byte went, L{STOPPED} when the
    client went away, L{SHORT} when the file ended early (logged, and the
    connection closed: the client cannot tell the end of a short body).

    The caller sets the status and headers (a C{Content-Length} of C{size})
    and calls L{start}.
    """

    def __init__(
        self,
        request: Any,
        file: IO[bytes],
        size: int,
        done: Callable[[str], None],
    ) -> None:
        self.request = request
        self.file = file
        self.size = size
        self.sent = 0
        self.done = done
        self.finished = False
        self._fd = file.fileno()
        channel = getattr(request, "channel", None)
        self._connection: Optional[Any] = plain_tcp_connection(
            getattr(channel, "transport", None)
        )

    def start(self) -> None:
        """Write the headers and start streaming."""
        self.request.registerProducer(self, False)
        # The headers: Twisted buffers them, sendfile waits until they went.
        self.request.write(b"")

    def resumeProducing(self) -> None:
        """Send the next piece (the consumer has room)."""
        if self.finished:
            return
        if connection_lost(self.request):
            self._end(STOPPED)
            return
        left = self.size - self.sent
        if left <= 0:
            self._end(SENT)
            return
        connection = self._connection
        if connection is not None and write_buffer_empty(connection):
            try:
                n = os.sendfile(
                    connection.fileno(), self._fd, self.sent, min(left, SENDFILE_MAX)
                )
            except BlockingIOError:
                n = -1
            except OSError:
                # Not a file sendfile takes, or a socket in error: the usual
                # write reports the latter, as for any other response.
                self._connection = None
                n = -1
            if n == 0:  # the file is shorter than it was
                self._end(SHORT)
                return
            if n > 0:
                self.sent += n
                # What Request.write counts (the access log, the metrics).
                self.request.sentLength += n
                if self.sent >= self.size:
                    self._end(SENT)
                return
            # The socket is full: the transport writes this piece when the
            # client reads, and pauses this producer until then.
            self._write(min(left, FALLBACK_CHUNK))
            return
        self._write(min(left, CHUNK))

    def _write(self, count: int) -> None:
        data = os.pread(self._fd, count, self.sent)
        if not data:  # the file is shorter than it was
            self._end(SHORT)
            return
        self.sent += len(data)
        self.request.write(data)
        if self.sent >= self.size:
            self._end(SENT)

    def stopProducing(self) -> None:
        """The client went away."""
        self._end(STOPPED)

    def _end(self, outcome: str) -> None:
        if self.finished:
            return
        self.finished = True
        request = self.request
        # Once the request lost its channel, there is nothing to unregister from.
        lost = connection_lost(request)
        if request.producer is self and not lost:
            request.unregisterProducer()
        if outcome == SHORT:
            log.error(
                "izzati: file_return({path!r}) ended after {sent} of {size} "
                "bytes (the file shrank): closing the connection",
                path=getattr(self.file, "name", "?"),
                sent=self.sent,
                size=self.size,
            )
            if not lost:
                request.loseConnection()
        self.done(outcome)
