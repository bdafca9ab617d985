"""
Large file uploads received without passing through Python (Linux).

While a multipart body's file part is being written to its temporary file,
the bytes of that part need no parsing but the search for the delimiter
that ends it.  On a plain TCP connection (no TLS, no wrapper that changes
what is read) with a C{Content-Length} body, L{SpliceReceiver} then moves
them from the socket straight into the part's temporary file with
C{splice(2)} (socket to a pipe, pipe to the file: one copy in the kernel
instead of two copies through Python), and looks for the delimiter in the
file's pages through a memory map.  The bytes from the delimiter on are
read back and go through the usual path (the channel, the request's
counters and limits, the parser), which also receives the last bytes of
the body, so the channel ends the body itself as always.

Everything else is read as usual: TLS, UNIX sockets, chunked bodies, test
transports, parts in memory, text fields, part headers, bodies of less
than L{MIN_SPLICE}, other systems; and an upload whose splice fails, from
that moment on, with nothing lost (every upload after it too when the
failure says the system will not splice: L{_UNSUPPORTED}).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import sys
from typing import IO, Any, Optional

from twisted.internet import main
from twisted.logger import Logger

from twistbridge._internals import (
    body_left,
    give_back_reads,
    plain_tcp_reader,
    take_reads,
)
from twistbridge.izzati._core import memmem, payload_length
from twistbridge.request import Refusal

log = Logger()

#: Whether this system can splice a socket into a file.
AVAILABLE = sys.platform.startswith("linux") and hasattr(os, "splice")
#: A body is spliced only while at least this many of its bytes are to come.
MIN_SPLICE = 1024 * 1024
#: Bytes moved by one splice at most (the pipe's size, if the system allows:
#: Linux's default C{pipe-max-size}, and 64 uploads at once within the
#: default C{pipe-user-pages-soft}; past them a pipe keeps its own size).
PIPE_SIZE = 1024 * 1024
#: Bytes one connection splices before the reactor serves the others.  Twice
#: a read of the usual path (C{LARGE_READ}): 6 to 10 % less CPU per MiB than
#: 512 KiB, for other clients' requests answered 1 to 1.5 ms later meanwhile
#: (see the performance section of docs/protocols/izzati.rst).
TURN = 1024 * 1024
#: The last bytes of a body are always read as usual (the channel ends the
#: body when they arrive).
KEEP = 64 * 1024
#: Disk blocks allocated ahead of what is spliced into a file (at most what
#: is left of the body, which the upload disk budget holds already), so
#: that the file system allocates them in a few large pieces instead of
#: page by page (0: never).
PREALLOCATE = 64 * 1024 * 1024

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
#: What a splice fails with where the system will not splice.
_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.ESPIPE}
)
#: The system call (a module name, so that tests can make it fail).
_splice: Any = getattr(os, "splice", None)
#: A splice failed with one of L{_UNSUPPORTED}: no more splicing here.
_refused = False


def receiver(request: Any, consumer: Any, length: Optional[int]) -> Any:
    """
    A L{SpliceReceiver} for C{request}'s body going to C{consumer} (an
    upload consumer), or L{None} where the body is read as usual.
    """
    if not AVAILABLE or _refused or length is None or length < MIN_SPLICE:
        return None
    if not hasattr(request, "body_read_past"):
        return None
    channel = request.channel
    connection = plain_tcp_reader(channel)
    if connection is None or body_left(channel) is None:
        return None
    return SpliceReceiver(request, connection, consumer)


class SpliceReceiver:
    """
    Moves a file part's bytes from one connection's socket into the part's
    temporary file (see the module docstring).

    @ivar spliced: bytes stored by splicing so far.
    @ivar broken: splicing failed for this upload; the rest of its body is
        read as usual.
    """

    def __init__(self, request: Any, connection: Any, consumer: Any) -> None:
        self.request = request
        self.channel = request.channel
        self.connection = connection
        self.consumer = consumer
        self.parser = consumer.parser
        self.delimiter: bytes = consumer.parser.delimiter
        self.spliced = 0
        self.broken = False
        self.armed = False
        self._pipe: Optional[tuple] = None
        self._stream: Optional[IO[bytes]] = None
        self._fd = -1
        self._end = 0
        #: the blocks of the file C{_allocated_in} are allocated up to
        #: C{_allocated} (L{PREALLOCATE}; a part may be armed more than once)
        self._allocated = 0
        self._allocated_in: Optional[IO[bytes]] = None

    def arm(self) -> None:
        """
        Take over the connection's reads if the next bytes of the body go
        unchanged to a temporary file (L{BodyParser.file_payload}) and
        enough of them are still to come.
        """
        if self.armed or self.broken:
            return
        left = body_left(self.channel)
        if left is None or left < MIN_SPLICE:
            return
        item = self.parser.file_payload()
        if item is None:
            return
        stream = self.consumer.store.disk_stream(item)
        if stream is None:
            return
        try:
            if self._pipe is None:
                self._pipe = _make_pipe()
            stream.flush()
            fd = stream.fileno()
            end = stream.tell()
        except OSError as e:
            log.info("izzati: not splicing an upload: {why}", why=e)
            self.broken = True
            return
        self._stream, self._fd, self._end = stream, fd, end
        if stream is not self._allocated_in:
            self._allocated, self._allocated_in = end, stream
        self.armed = True
        take_reads(self.connection, self.doRead)

    def doRead(self) -> Any:
        """The socket is readable: splice what is there (L{TURN} at most)."""
        turn = 0
        sock = self.connection.fileno()
        while turn < TURN:
            left = body_left(self.channel)
            if left is None or left - KEEP <= 0:
                self.disarm()
                return self.connection.doRead()
            assert self._pipe is not None  # (armed)
            try:
                n = _splice(
                    sock, self._pipe[1], min(PIPE_SIZE, TURN, left - KEEP), flags=_FLAGS
                )
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                if self.spliced == 0 and e.errno in _UNSUPPORTED:
                    return self._fall_back(e, b"")
                return main.CONNECTION_LOST
            if not n:
                return main.CONNECTION_DONE
            back = self._store(n)
            if back is None:
                return None  # refused, or fell back
            if back:
                self.disarm()
                self.connection.protocol.dataReceived(back)
                return None
            turn += n
        self.channel.resetTimeout()
        return None

    def _store(self, n: int) -> Optional[bytes]:
        """
        Move the C{n} bytes in the pipe to the file, keep the payload and
        count it; the bytes after it, read back (C{b""}: all were payload),
        or L{None} when the request was refused or splicing fell back.
        """
        assert self._pipe is not None  # (armed)
        if self._end + n > self._allocated:
            self._preallocate(n)
        moved = 0
        try:
            while moved < n:
                moved += _splice(
                    self._pipe[0], self._fd, n - moved, offset_dst=self._end + moved
                )
        except OSError as e:
            written = os.pread(self._fd, moved, self._end) if moved else b""
            return self._fall_back(e, written + _drain(self._pipe[0], n - moved))
        # A map of what was just stored, for as long as it is searched (the
        # map holds a descriptor of the file of its own while it is open).
        base = self._end - self._end % mmap.ALLOCATIONGRANULARITY
        start = self._end - base
        try:
            with mmap.mmap(self._fd, start + n, access=_ACCESS, offset=base) as pages:
                found = _find(pages, self.delimiter, start, start + n)
                kept = payload_length(pages, self.delimiter, start, start + n, found)
        except OSError as e:
            return self._fall_back(e, os.pread(self._fd, n, self._end))
        back = os.pread(self._fd, n - kept, self._end + kept) if kept < n else b""
        if kept:
            self._end += kept
            self.spliced += kept
            self.parser.took_payload(kept)
            self.consumer.received += kept
            self.request.body_read_past(kept)
            if not self.consumer.store.charge(kept):
                message = self.consumer.store.full
                self.disarm()
                self.request.refuse_body(
                    Refusal(507, message, [(b"Retry-After", b"10")])
                )
                return None
        return back

    def _preallocate(self, n: int) -> None:
        """Allocate the file's blocks for the C{n} bytes in the pipe and
        the L{PREALLOCATE} after them (no more than the body has left),
        without changing the file's size."""
        global _fallocate
        if _fallocate is None or PREALLOCATE <= 0:
            return
        left = body_left(self.channel) or 0  # (the n bytes in the pipe too)
        end = self._end + max(n, min(PREALLOCATE, left))
        start = max(self._allocated, self._end)
        if _fallocate(self._fd, _FALLOC_FL_KEEP_SIZE, start, end - start) != 0:
            # Not here, or no room: the writes allocate as they go (and a
            # full disk fails them, as without preallocating).
            if ctypes.get_errno() in _UNSUPPORTED:
                _fallocate = None
            return
        self._allocated = end

    def _fall_back(self, error: OSError, data: bytes) -> Any:
        """Splicing failed: read as usual from now on, starting with C{data}
        (bytes taken from the socket but not stored)."""
        global _refused
        if error.errno in _UNSUPPORTED:
            # The system will not splice these sockets or files: not again.
            if not _refused:
                log.info(
                    "izzati: splicing an upload failed ({why}); uploads are "
                    "read as usual from now on",
                    why=error.strerror,
                )
            _refused = True
        else:
            log.info(
                "izzati: splicing an upload failed ({why}); reading it as usual",
                why=error.strerror,
            )
        self.broken = True
        self.disarm()
        self.close()
        if data:
            self.connection.protocol.dataReceived(data)
            return None
        return self.connection.doRead()

    def disarm(self) -> None:
        """Give the connection's reads back; cut the file to what it holds."""
        if not self.armed:
            return
        self.armed = False
        give_back_reads(self.connection)
        stream, self._stream = self._stream, None
        if stream is not None and not stream.closed:
            os.ftruncate(self._fd, self._end)
            stream.seek(self._end)

    def close(self) -> None:
        """The body is over (or never will be): release the pipe."""
        self.disarm()
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            for fd in pipe:
                os.close(fd)


#: C{memmem(3)} (see L{twistbridge.izzati._core.memmem}): about twice as
#: fast as C{mmap.find} over a file part's pages.
_memmem = memmem if AVAILABLE else None
#: How the pages are mapped: C{ctypes} takes the address of a writable map
#: only (nothing is ever written to it).
_ACCESS = mmap.ACCESS_WRITE if _memmem is not None else mmap.ACCESS_READ


def _find(pages: mmap.mmap, delimiter: bytes, start: int, end: int) -> int:
    """Where the first C{delimiter} of C{pages[start:end]} starts, or -1."""
    if _memmem is None:
        return pages.find(delimiter, start, end)
    view = ctypes.c_char.from_buffer(pages)
    try:
        at = ctypes.addressof(view)
        hit = _memmem(at + start, end - start, delimiter, len(delimiter))
    finally:
        del view
    return -1 if hit is None else hit - at


def _libc_fallocate() -> Any:
    """The C library's C{fallocate(2)} (which takes flags, unlike
    C{os.posix_fallocate}), or L{None}."""
    if not AVAILABLE:
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (AttributeError, OSError):  # pragma: no cover - a C library without it
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return function


#: C{fallocate(2)} (a module name, so that tests can take it away), or
#: L{None}: not here, or it failed as unsupported once.
_fallocate: Any = _libc_fallocate()
#: C{fallocate} allocates without making the file longer: its size stays
#: what was written, whatever is allocated past it.
_FALLOC_FL_KEEP_SIZE = 1


def _make_pipe() -> tuple:
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # the system's limit is lower: the pipe's default size will do
    return read, write


def _drain(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
