"""
Uploaded files: the items of the callback's C{data} list, and the temporary
files behind them.

Every file part is written as it arrives: small ones to memory, the others
to an anonymous temporary file (L{tempfile.TemporaryFile}: on Linux it never
has a name in the file system, so nothing is left behind even if the server
is killed).  The request's L{UploadStore} closes them all when the request
ends, whatever happened.

What all in-flight uploads together hold on disk is bounded by one
L{DiskBudget} (the C{max_upload_disk} setting): a request reserves its
C{Content-Length} up front, a chunked one takes from the budget as it
writes, and a store gives back all it took when its request ends.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from typing import IO, Any, List, Optional, Tuple

from twistbridge.izzati._core import IzzatiError, safe_filename

_COPY_BUFFER = 1024 * 1024
#: A file part up to this size is kept in memory...
SPOOL_FILE = 256 * 1024
#: ...while the request's in-memory files stay under this.
SPOOL_BUDGET = 1024 * 1024
#: Temporary files one request may make.
MAX_DISK_FILES = 100


class DiskBudget:
    """
    The temporary disk all in-flight uploads together may hold.

    @ivar limit: bytes.
    @ivar used: bytes taken by the stores of requests still in flight.
    """

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0

    @property
    def left(self) -> int:
        """Bytes still free."""
        return max(0, self.limit - self.used)

    def take(self, size: int) -> bool:
        """Take C{size} bytes if that many are free; whether it did."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        """Give back C{size} bytes taken before."""
        self.used = max(0, self.used - size)

    def full_message(self, size: Optional[int] = None) -> str:
        """What a refused client is told."""
        wanted = "this upload" if size is None else f"an upload of {size} bytes"
        return (
            f"no room for {wanted}: uploads in progress hold {self.used} of the "
            f"{self.limit} bytes of temporary disk (--max-upload-disk); "
            "retry later, or send a smaller upload"
        )


class UploadedFile:
    """
    One uploaded file, as the callback sees it.

    @ivar filename: the file name exactly as the client sent it (use
        L{save} with a directory, or L{safe_filename}, before using it as a
        path).
    @ivar name: the form field the file came in (izzati's client uses
        C{"file"}).
    @ivar content_type: the part's content type (C{application/octet-stream}
        when the client gave none).
    @ivar size: the file's size in bytes.
    @ivar stream: the open binary file holding the data, positioned at 0 (a
        L{io.BytesIO} for a small file, else a temporary file).
    """

    def __init__(
        self, filename: str, content_type: str, stream: IO[bytes], name: str = "file"
    ) -> None:
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.stream = stream
        self.size = 0

    def __repr__(self) -> str:
        return (
            f"<UploadedFile {self.filename!r} ({self.content_type}, {self.size} bytes)>"
        )

    def __reduce__(self) -> Any:
        # An upload is an open file, possibly gigabytes on disk: it is never
        # copied into a worker process (whatever its size, so a handler does
        # not work for small files and fail for big ones).  Save it and pass
        # the path instead.
        raise TypeError(
            "an uploaded file cannot be sent to a worker process: "
            "save() it and pass the path"
        )

    @property
    def mimetype(self) -> str:
        """The content type without parameters (Werkzeug's name for it)."""
        return self.content_type.split(";", 1)[0].strip().lower()

    def read(self, size: int = -1) -> bytes:
        """Read (the rest of) the file, or up to C{size} bytes of it."""
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the read position of L{stream}."""
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        """The read position of L{stream}."""
        return self.stream.tell()

    def save(self, location: Any, buffer_size: int = _COPY_BUFFER) -> Any:
        """
        Save the whole file (whatever has been read of it already).

        @param location: an existing directory: the file is saved there under
            L{safe_filename}C{(self.filename)}, never outside it and never
            through a symbolic link; any other path: the file is written at
            that path; a writable file object: the data is written to it.
        @return: the path written (or the file object).
        """
        if hasattr(location, "write"):
            self._copy_to(location, buffer_size)
            return location
        path = os.fspath(location)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        if os.path.isdir(path):
            directory = os.path.realpath(path)
            target = os.path.join(directory, safe_filename(self.filename))
            if os.path.dirname(target) != directory:  # pragma: no cover - defence
                raise ValueError(f"refusing to save {self.filename!r} outside {path}")
            flags |= getattr(os, "O_NOFOLLOW", 0)
        else:
            target = path
        fd = os.open(target, flags, 0o666)
        with os.fdopen(fd, "wb") as out:
            self._copy_to(out, buffer_size)
        return target

    def _copy_to(self, out: Any, buffer_size: int) -> None:
        position = self.stream.tell()
        try:
            self.stream.seek(0)
            shutil.copyfileobj(self.stream, out, buffer_size)
        finally:
            self.stream.seek(position)

    def close(self) -> None:
        """Close (and so delete) the temporary file."""
        self.stream.close()


class _SpoolingSink:
    """
    Where one file part's bytes go: memory while the part is small and the
    request's memory budget lasts, then an anonymous temporary file.
    """

    __slots__ = ("store", "item", "in_memory")

    def __init__(self, store: UploadStore, item: UploadedFile) -> None:
        self.store = store
        self.item = item
        self.in_memory = 0

    def write(self, data: bytes) -> None:
        stream = self.item.stream
        if isinstance(stream, io.BytesIO):
            n = len(data)
            if (
                self.in_memory + n <= SPOOL_FILE
                and self.store.spooled + n <= SPOOL_BUDGET
            ):
                stream.write(data)
                self.in_memory += n
                self.store.spooled += n
                return
            if not self.store.charge(self.in_memory + n):
                return
            disk = self.store.disk_file()
            with stream.getbuffer() as spooled:
                disk.write(spooled)
            stream.close()
            self.store.spooled -= self.in_memory
            self.in_memory = 0
            self.item.stream = stream = disk
            stream.write(data)
            return
        if self.store.charge(len(data)):
            stream.write(data)


class UploadStore:
    """
    The uploaded files of one request.

    Small files stay in memory (up to L{SPOOL_FILE} bytes each, L{SPOOL_BUDGET}
    per request), as Werkzeug spools them; the others go to anonymous
    temporary files, at most L{MAX_DISK_FILES} per request, so that a request
    cannot use up the server's file descriptors.

    @ivar directory: where temporary files are made (L{None}: the system's
        temporary directory, C{$TMPDIR}).
    @ivar files: every L{UploadedFile} made so far.
    @ivar spooled: bytes of files held in memory.
    @ivar disk_files: temporary files made.
    @ivar budget: the L{DiskBudget} shared by all uploads, or L{None}.
    @ivar held: bytes this store took from the budget.
    @ivar on_disk: bytes written to temporary files.
    @ivar full: L{None}, or the message for the client once the budget ran
        out (nothing more is written then).
    """

    def __init__(
        self, directory: Optional[str] = None, budget: Optional[DiskBudget] = None
    ) -> None:
        self.directory = directory
        self.files: List[UploadedFile] = []
        self.closed = False
        self.spooled = 0
        self.disk_files = 0
        self.budget = budget
        self.held = 0
        self.on_disk = 0
        self.full: Optional[str] = None

    def reserve(self, size: int) -> bool:
        """Take C{size} bytes of the budget up front (a C{Content-Length})."""
        if self.budget is None:
            return True
        if not self.budget.take(size):
            return False
        self.held += size
        return True

    def charge(self, size: int) -> bool:
        """
        Account for C{size} more bytes written to disk, taking from the
        budget past what is held; L{False} (and L{full} set) when it ran out.
        """
        if self.full is not None:
            return False
        total = self.on_disk + size
        if self.budget is not None and total > self.held:
            if not self.budget.take(total - self.held):
                self.full = self.budget.full_message()
                return False
            self.held = total
        self.on_disk = total
        return True

    def _give_back(self) -> None:
        if self.budget is not None and self.held:
            self.budget.give(self.held)
        self.held = 0

    def open_file(
        self, filename: str, content_type: str, name: str = "file"
    ) -> Tuple[UploadedFile, Any]:
        """Make the item and the sink for one file part."""
        if self.closed:
            raise OSError(0, "the request has ended")
        item = UploadedFile(filename, content_type, io.BytesIO(), name)
        self.files.append(item)
        return item, _SpoolingSink(self, item)

    def disk_file(self) -> IO[bytes]:
        """
        A new anonymous temporary file.

        @raise IzzatiError: 413 past L{MAX_DISK_FILES}.
        """
        if self.disk_files >= MAX_DISK_FILES:
            raise IzzatiError(
                413, f"more than {MAX_DISK_FILES} large files in one request"
            )
        self.disk_files += 1
        return tempfile.TemporaryFile(prefix="twistbridge-upload-", dir=self.directory)

    @staticmethod
    def disk_stream(item: UploadedFile) -> Optional[IO[bytes]]:
        """The temporary file holding C{item}, or L{None} while it is in memory."""
        stream = item.stream
        return None if isinstance(stream, io.BytesIO) else stream

    @staticmethod
    def done_file(item: UploadedFile, size: int) -> None:
        """A file part is complete: set its size and rewind it."""
        item.size = size
        item.stream.flush()
        item.stream.seek(0)

    def close(self) -> None:
        """Close (and so delete) every temporary file; safe to call twice."""
        self.closed = True
        self._give_back()
        files, self.files = self.files, []
        for item in files:
            try:
                item.close()
            except OSError:  # pragma: no cover - closing a temp file
                pass

    def release(self) -> None:
        """
        Forget the files without closing them: the callback may still be
        reading them in a thread; they are deleted once it lets them go.
        Their disk goes back to the budget now.
        """
        self.closed = True
        self._give_back()
        self.files = []
